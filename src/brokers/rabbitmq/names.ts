/**
 * Names of everything botqueue declares on RabbitMQ, all under one prefix (the namespace) so
 * they are recognisable in the management UI and a test or a second deployment can use its own.
 */
export class Names {
  constructor(readonly namespace: string) {}

  /** Direct exchange of a topic; routing key = partition number. */
  exchange(topic: string): string {
    return `${this.namespace}.${topic}`;
  }

  /** Quorum queue of one (topic, group, partition). */
  partitionQueue(topic: string, group: string, partition: number): string {
    // `~` cannot appear in topic or group names, so no two (topic, group) pairs share a queue.
    return `${this.namespace}.${topic}~${group}~p${partition}`;
  }

  /** Fanout alternate exchange: where a topic's messages go while no group is subscribed. */
  unclaimedExchange(topic: string): string {
    return `${this.namespace}.${topic}~unclaimed`;
  }

  unclaimedQueue(topic: string): string {
    return `${this.namespace}.${topic}~unclaimed`;
  }

  /** Fanout exchange RabbitMQ dead-letters into when a message passes `x-delivery-limit`. */
  deadLetterExchange(topic: string): string {
    return `${this.namespace}.${topic}~dead`;
  }

  deadLetterQueue(topic: string): string {
    return `${this.namespace}.${topic}~dead`;
  }

  /** The PostgreSQL schema of the shared store. */
  get schema(): string {
    return `${this.namespace}_store`;
  }
}
