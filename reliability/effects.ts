/**
 * The handlers' own record of what they did, in a SQLite file of its own (not botqueue's):
 * every invocation (attempts, in the order they happened: rowid), and every execution of the
 * side effect under UNIQUE(message id), a second execution going to `effect_repeats`.
 */
import Database from 'better-sqlite3';
import type { Attempt, EffectExecution } from './checker.js';

export class EffectStore {
  private readonly db: Database.Database;
  private readonly insertAttempt: Database.Statement<[string, string, number, number]>;
  private readonly insertEffect: Database.Statement<[string, number, number]>;
  private readonly insertRepeat: Database.Statement<[string, number, number]>;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 10000');
    // The effect log only has to survive process kills (the page cache does), not power loss.
    this.db.pragma('synchronous = OFF');
    this.db.exec(`CREATE TABLE IF NOT EXISTS attempts (id TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, pid INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS effects (id TEXT PRIMARY KEY, pid INTEGER NOT NULL, at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS effect_repeats (id TEXT NOT NULL, pid INTEGER NOT NULL, at INTEGER NOT NULL);`);
    this.insertAttempt = this.db.prepare('INSERT INTO attempts (id, key, seq, pid) VALUES (?, ?, ?, ?)');
    this.insertEffect = this.db.prepare('INSERT OR IGNORE INTO effects (id, pid, at) VALUES (?, ?, ?)');
    this.insertRepeat = this.db.prepare('INSERT INTO effect_repeats (id, pid, at) VALUES (?, ?, ?)');
  }

  attempt(id: string, key: string, seq: number): void {
    this.insertAttempt.run(id, key, seq, process.pid);
  }

  effect(id: string): void {
    const at = Date.now();
    if (this.insertEffect.run(id, process.pid, at).changes === 0) this.insertRepeat.run(id, process.pid, at);
  }

  readAttempts(): Attempt[] {
    return this.db.prepare('SELECT id, key, seq, pid FROM attempts ORDER BY rowid').all() as Attempt[];
  }

  readEffects(): EffectExecution[] {
    const first = this.db.prepare('SELECT id, pid, at FROM effects ORDER BY rowid').all() as EffectExecution[];
    const repeats = this.db.prepare('SELECT id, pid, at FROM effect_repeats ORDER BY rowid').all() as EffectExecution[];
    return [...first, ...repeats];
  }

  close(): void {
    this.db.close();
  }
}
