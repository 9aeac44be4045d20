import type Database from 'better-sqlite3';
import type { Delivery } from '../broker.js';
import type { Catalog } from './catalog.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { unknownTopic } from './errors.js';
import { headersFromText } from './message-store.js';

type DeliveryRow = [
  seq: number,
  notBefore: number,
  attempts: number,
  firstFailedAt: number | null,
  parked: number,
  id: string,
  key: string | null,
  publishedAt: number,
  headers: string | null,
  payload: string,
];

/** Reads a group's pending messages of one partition: a range scan of pending's primary key. */
export class Fetcher {
  private readonly select: Database.Statement<[number, number, number, number], DeliveryRow>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
  ) {
    this.select = db
      .prepare<[number, number, number, number], DeliveryRow>(
        `SELECT p.seq, p.not_before, p.attempts, p.first_failed_at, p.parked, m.id, m.key, m.published_at, m.headers, m.payload
         FROM pending p JOIN messages m ON m.seq = p.seq
         WHERE p.gid = ? AND p.partition = ? AND p.seq > ? ORDER BY p.seq LIMIT ?`,
      )
      .raw();
  }

  fetch(topic: string, group: string, partition: number, afterSeq: number, limit: number): Delivery[] {
    const row = this.catalog.topic(topic);
    if (row === undefined) throw unknownTopic(topic);
    if (!Number.isInteger(partition) || partition < 0 || partition >= row.partitions) {
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, `fetch ${topic}/${group}: partition ${String(partition)} is outside 0-${row.partitions - 1}`, {
        details: { option: 'partition' },
      });
    }
    const ref = this.catalog.group(topic, group);
    const max = Math.floor(limit);
    if (ref === undefined || !(max > 0)) return [];
    const rows = this.select.all(ref.gid, partition, afterSeq, max);
    const deliveries: Delivery[] = new Array<Delivery>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      deliveries[i] = {
        seq: r[0],
        id: r[5],
        key: r[6],
        partition,
        payload: r[9],
        headers: headersFromText(r[8]),
        publishedAt: r[7],
        notBefore: r[1],
        attempts: r[2],
        firstFailedAt: r[3],
        parked: r[4] !== 0,
      };
    }
    return deliveries;
  }
}
