/**
 * A fake Telegram Bot API on loopback, for the long-polling source: `POST /bot<token>/getUpdates`
 * with getUpdates' documented offset semantics (an update is confirmed, and forgotten, once
 * getUpdates is called with a higher offset; without an offset the earliest unconfirmed ones
 * come back), long polling up to `timeout` seconds, and at most `batch` updates per answer.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export class FakeBotApi {
  readonly server: Server;
  /** Updates not yet confirmed, in update_id order. */
  private pending: Array<Record<string, unknown> & { update_id: number }> = [];
  private waiters: Array<() => void> = [];
  /** Every update_id handed out, in order (repeats included). */
  readonly delivered: number[] = [];
  readonly offsets: Array<number | undefined> = [];
  /** Called with the offset of each request before it is answered. */
  onRequest: ((offset: number | undefined) => void | Promise<void>) | undefined;
  /** Called after an answer with updates was written. */
  onAnswered: ((ids: number[]) => void) | undefined;
  url = '';

  constructor(
    readonly token: string,
    private readonly batch = 100,
  ) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void this.answer(req.url ?? '', Buffer.concat(chunks).toString('utf8')).then(([status, body, ids]) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body), () => {
            if (ids.length > 0) this.onAnswered?.(ids);
          });
        });
      });
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  add(...updates: Array<Record<string, unknown> & { update_id: number }>): void {
    this.pending.push(...updates);
    this.pending.sort((a, b) => a.update_id - b.update_id);
    for (const wake of this.waiters.splice(0)) wake();
  }

  get unconfirmed(): number {
    return this.pending.length;
  }

  private async answer(url: string, text: string): Promise<[number, unknown, number[]]> {
    if (url !== `/bot${this.token}/getUpdates`) return [404, { ok: false, error_code: 404, description: 'Not Found' }, []];
    const params = JSON.parse(text || '{}') as { offset?: number; limit?: number; timeout?: number };
    this.offsets.push(params.offset);
    await this.onRequest?.(params.offset);
    if (params.offset !== undefined) this.pending = this.pending.filter((u) => u.update_id >= params.offset!);
    if (this.pending.length === 0 && (params.timeout ?? 0) > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, (params.timeout ?? 0) * 1000);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const result = this.pending.slice(0, Math.min(params.limit ?? 100, this.batch));
    const ids = result.map((u) => u.update_id);
    this.delivered.push(...ids);
    return [200, { ok: true, result }, ids];
  }

  async close(): Promise<void> {
    for (const wake of this.waiters.splice(0)) wake();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
