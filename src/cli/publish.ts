/**
 * `botqueue publish <topic>`: one message from flags, or NDJSON lines from stdin in batches.
 *
 * Bulk rule (documented in docs/cli.md): lines are published in file order, in atomic batches
 * of `--batch-size`. At the first bad line (not JSON, not a message object, or refused by the
 * library's validation) the valid lines before it are stored, nothing from it on, and the
 * error names the line so the operator can fix it and resume from it with `tail -n +N`.
 */
import { fstatSync } from 'node:fs';
import type { Botqueue } from '../client.js';
import type { PublishInput, PublishReceipt } from '../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { redactSecrets } from '../core/redact.js';
import { ensureConfiguredTopic, GLOBAL_FLAGS_HELP, withClient, type Command, type CommandContext, type Flags, type InputStream } from './context.js';
import { CliError, formatError, usageError } from './errors.js';
import { formatDuration, plural, type Output } from './output.js';

const DEFAULT_BATCH = 500;

const help = `Usage:
  botqueue publish <topic> --payload '<json>' [--key K] [--id ID] [--header k=v]... [--delay-ms N] [--json]
  <ndjson-source> | botqueue publish <topic> [--batch-size N] [--json]

Publishes one message from flags, or, when --payload is absent and stdin is not a
terminal, one message per NDJSON line of stdin: {"key":..,"id":..,"payload":..,"headers":{..},"delayMs":..}
(key, id, headers and delayMs optional). Each message is durably stored before its receipt
is printed.

Flags:
  --payload <json>     the payload, as JSON (e.g. '{"text":"hi"}', '"text"', 42)
  --key <key>          ordering key (messages of a key are handled one at a time, in order)
  --id <id>            message id; the same id within the dedup window is stored once
  --header <k=v>       a header; repeat for more
  --delay-ms <n>       hold the message (and its key's later messages) this long
  --batch-size <n>     NDJSON lines per atomic batch (default ${DEFAULT_BATCH}, 1-10000)
  --json               print a JSON document with every receipt (see docs/cli.md)

NDJSON: lines are published in order; blank lines are skipped. At the first bad line the
lines before it are stored and nothing from it on; the error names the line, so fix it and
resume with: tail -n +<line> file.ndjson | botqueue publish <topic>. Messages with ids can
also be re-run whole: duplicates within the dedup window are dropped.
A progress bar is drawn on stderr when it is a terminal.

${GLOBAL_FLAGS_HELP}`;

export const command: Command = {
  summary: 'publish one message from flags, or NDJSON lines from stdin',
  help,
  flags: {
    payload: { type: 'string' },
    key: { type: 'string' },
    id: { type: 'string' },
    header: { type: 'string', multiple: true },
    'delay-ms': { type: 'string' },
    'batch-size': { type: 'string' },
    json: { type: 'boolean' },
  },
  run,
};

async function run(ctx: CommandContext, flags: Flags): Promise<number> {
  const [topic] = flags.expectPositionals(1, 1, 'a topic: botqueue publish <topic>');
  const payloadText = flags.string('payload');
  if (payloadText !== undefined) {
    flags.only(['payload', 'key', 'id', 'header', 'delay-ms', 'json'], 'publish --payload (--batch-size is for NDJSON on stdin)');
    return publishOne(ctx, topic!, flags, payloadText);
  }
  if (ctx.io.stdin.isTTY === true) {
    throw usageError(`nothing to publish: give --payload '<json>', or pipe NDJSON lines on stdin`, 'publish');
  }
  const perMessage = ['key', 'id', 'header', 'delay-ms'].filter((name) => flags.given.has(name));
  if (perMessage.length > 0) {
    throw usageError(
      `--${perMessage[0]!} goes with --payload; without --payload messages come from stdin as NDJSON, with key, id, headers and delayMs on each line`,
      'publish',
    );
  }
  return publishLines(ctx, topic!, flags);
}

function messageFromFlags(flags: Flags, payloadText: string): PublishInput {
  let payload: unknown;
  try {
    payload = JSON.parse(payloadText);
  } catch (error) {
    throw usageError(`--payload is not valid JSON (${(error as Error).message}); quote it, e.g. --payload '{"text":"hi"}' or --payload '"plain text"'`, 'publish');
  }
  const message: PublishInput = { payload };
  const key = flags.string('key');
  const id = flags.string('id');
  if (key !== undefined) message.key = key;
  if (id !== undefined) message.id = id;
  const headers = flags.list('header');
  if (headers.length > 0) {
    message.headers = {};
    for (const header of headers) {
      const eq = header.indexOf('=');
      if (eq <= 0) throw usageError(`--header ${JSON.stringify(header)} must be name=value`, 'publish');
      message.headers[header.slice(0, eq)] = header.slice(eq + 1);
    }
  }
  const delayMs = flags.integer('delay-ms', 0);
  if (delayMs !== undefined) message.delayMs = delayMs;
  return message;
}

async function publishOne(ctx: CommandContext, topic: string, flags: Flags, payloadText: string): Promise<number> {
  const message = messageFromFlags(flags, payloadText);
  const receipt = await withClient(ctx, async (bq, settings) => {
    await ensureConfiguredTopic(bq, settings, topic);
    return bq.publish(topic, message);
  });
  if (flags.boolean('json')) {
    const doc = new ReceiptsDocument(ctx.out, topic);
    doc.add([receipt], [null]);
    doc.end({ messages: 1, stored: receipt.duplicate ? 0 : 1, duplicates: receipt.duplicate ? 1 : 0 });
  } else if (receipt.duplicate) {
    ctx.out.line(`duplicate: ${receipt.id} was already published to ${topic} (partition ${receipt.partition}, seq ${receipt.seq}); nothing new stored`);
  } else {
    ctx.out.line(`published ${receipt.id} to ${topic}: partition ${receipt.partition}, seq ${receipt.seq}`);
  }
  return 0;
}

/** A bad NDJSON line: everything before it is stored, nothing from it on. */
class LineError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

interface Counts {
  messages: number;
  stored: number;
  duplicates: number;
}

async function publishLines(ctx: CommandContext, topic: string, flags: Flags): Promise<number> {
  const batchSize = flags.integer('batch-size', 1, 10_000) ?? DEFAULT_BATCH;
  const json = flags.boolean('json');
  const started = Date.now();
  const counts: Counts = { messages: 0, stored: 0, duplicates: 0 };
  const doc = json ? new ReceiptsDocument(ctx.out, topic) : undefined;
  const fileSize = regularFileSize(ctx.io.stdin);
  const progress = fileSize === undefined ? ctx.out.progress('publishing', undefined, 'messages') : ctx.out.progress('publishing', fileSize, 'bytes', ' | {messages} messages', { messages: 0 });
  let batches = 0;
  /** The last line whose message (and every one before it) is stored. */
  let storedThrough = 0;
  let lineNo = 0;
  let bytesRead = 0;

  const record = (receipts: PublishReceipt[], lines: number[]): void => {
    for (const receipt of receipts) {
      counts.messages++;
      if (receipt.duplicate) counts.duplicates++;
      else counts.stored++;
    }
    doc?.add(receipts, lines);
    storedThrough = lines[lines.length - 1] ?? storedThrough;
    progress.update(fileSize === undefined ? counts.messages : bytesRead, { messages: counts.messages });
  };

  try {
    await withClient(ctx, async (bq, settings) => {
      await ensureConfiguredTopic(bq, settings, topic);
      let batch: PublishInput[] = [];
      let lines: number[] = [];
      const flush = async (): Promise<void> => {
        if (batch.length === 0) return;
        const [messages, numbers] = [batch, lines];
        batch = [];
        lines = [];
        batches++;
        await publishBatch(bq, topic, messages, numbers, record);
      };
      for await (const { text, number, bytes } of readLines(ctx.io.stdin)) {
        lineNo = number;
        bytesRead = bytes;
        if (text.trim() === '') continue;
        const problem = lineProblem(text);
        if (typeof problem === 'string') {
          await flush(); // the valid lines before the bad one are stored
          throw new LineError(number, problem);
        }
        batch.push(problem.message);
        lines.push(number);
        if (batch.length >= batchSize) await flush();
      }
      await flush();
    });
  } catch (error) {
    progress.stop();
    const failure = describeFailure(error, topic, storedThrough, lineNo);
    doc?.end(counts, { message: redactSecrets(failure.message, ...ctx.secrets), line: failure.line, code: error instanceof BotqueueError ? error.code : undefined });
    throw failure;
  }
  progress.stop();
  if (doc !== undefined) doc.end(counts);
  else if (lineNo === 0) ctx.out.note('stdin had no lines: nothing published');
  else {
    ctx.out.line(
      `published ${plural(counts.messages, 'message')} to ${topic}: ${counts.stored} stored, ${plural(counts.duplicates, 'duplicate')} (${plural(batches, 'batch', 'batches')}, ${formatDuration(Date.now() - started)})`,
    );
  }
  return 0;
}

/** Publishes one batch; a message the library refuses stops the run at its line, after storing the ones before it. */
async function publishBatch(bq: Botqueue, topic: string, messages: PublishInput[], lines: number[], record: (receipts: PublishReceipt[], lines: number[]) => void): Promise<void> {
  try {
    record(await bq.publishBatch(topic, messages), lines);
  } catch (error) {
    if (!(error instanceof BotqueueError) || (error.code !== ErrorCodes.INVALID_MESSAGE && error.code !== ErrorCodes.MESSAGE_TOO_LARGE)) throw error;
    const index = messages.length === 1 ? 0 : error.details?.index;
    if (typeof index !== 'number' || lines[index] === undefined) throw error;
    if (index > 0) record(await bq.publishBatch(topic, messages.slice(0, index)), lines.slice(0, index));
    throw new LineError(lines[index], error.message.replace(/^message #\d+: /, ''));
  }
}

/** The message a line holds, or what is wrong with it. */
function lineProblem(text: string): { message: PublishInput } | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `not valid JSON (${(error as Error).message})`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a message object {"key":..,"id":..,"payload":..}';
  if (!('payload' in value)) return 'the message has no "payload" (null is fine)';
  return { message: value };
}

/** The one-line error for a failed bulk publish: what was stored, and where to resume. */
function describeFailure(error: unknown, topic: string, storedThrough: number, lastLine: number): CliError & { line: number | undefined } {
  const resumeFrom = error instanceof LineError ? error.line : storedThrough + 1;
  const resume = `lines before ${resumeFrom} are stored, nothing from line ${resumeFrom} on; fix it and resume with: tail -n +${resumeFrom} <file> | botqueue publish ${topic}`;
  let failure: CliError;
  if (error instanceof LineError) failure = new CliError(`line ${error.line}: ${error.message}`, resume);
  else {
    const what = formatError(error).replace(/^botqueue: /, '').replace(/ — .*$/, '');
    const range = lastLine > storedThrough ? ` (lines ${storedThrough + 1}-${lastLine})` : '';
    failure = new CliError(`publish failed${range}: ${what}`, resume, { cause: error });
  }
  return Object.assign(failure, { line: error instanceof LineError ? error.line : undefined });
}

/** The size of stdin when it is a regular file (`< file.ndjson`), so progress can show a real bar. */
function regularFileSize(stdin: InputStream): number | undefined {
  if (typeof stdin.fd !== 'number') return undefined;
  try {
    const stat = fstatSync(stdin.fd);
    return stat.isFile() ? stat.size : undefined;
  } catch {
    return undefined;
  }
}

/** Lines of a stream, numbered from 1, with the bytes read so far; memory stays bounded by one chunk and one line. */
async function* readLines(stream: InputStream): AsyncGenerator<{ text: string; number: number; bytes: number }> {
  stream.setEncoding?.('utf8');
  let rest = '';
  let number = 0;
  let bytes = 0;
  for await (const chunk of stream) {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    bytes += Buffer.byteLength(text);
    const parts = (rest + text).split('\n');
    rest = parts.pop()!;
    for (const part of parts) yield { text: part.endsWith('\r') ? part.slice(0, -1) : part, number: ++number, bytes };
  }
  if (rest !== '') yield { text: rest.endsWith('\r') ? rest.slice(0, -1) : rest, number: number + 1, bytes };
}

/**
 * The `--json` document, written as receipts arrive so that a bulk publish of millions of
 * lines never holds them all: `{ topic, receipts: [...], messages, stored, duplicates, error? }`.
 */
class ReceiptsDocument {
  private first = true;

  constructor(
    private readonly out: Output,
    topic: string,
  ) {
    out.stdout.write(`{\n  "topic": ${JSON.stringify(topic)},\n  "receipts": [`);
  }

  add(receipts: PublishReceipt[], lines: (number | null)[]): void {
    let text = '';
    receipts.forEach((r, i) => {
      const entry = { line: lines[i] ?? null, id: r.id, topic: r.topic, partition: r.partition, seq: r.seq, duplicate: r.duplicate };
      text += `${this.first ? '\n' : ',\n'}    ${JSON.stringify(entry)}`;
      this.first = false;
    });
    if (text !== '') this.out.stdout.write(text);
  }

  end(counts: Counts, error?: { message: string; line: number | undefined; code: string | undefined }): void {
    let text = `${this.first ? ']' : '\n  ]'},\n  "messages": ${counts.messages},\n  "stored": ${counts.stored},\n  "duplicates": ${counts.duplicates}`;
    if (error !== undefined) text += `,\n  "error": ${JSON.stringify({ message: error.message, line: error.line ?? null, code: error.code ?? null })}`;
    this.out.stdout.write(`${text}\n}\n`);
  }
}
