import net from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that can be taken down (listener closed,
 * every connection cut) and brought back on the same port, or frozen: every
 * connection stays open and nothing goes through (a network that drops
 * packets silently) until it thaws.
 */
export class Outage {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** The client side of each connection through the proxy (to count the open ones). */
  private readonly inbound = new Set<net.Socket>();
  private frozen = false;
  /** Connections open when the network dropped them: nothing goes through them (new ones do) until the thaw. */
  private readonly dropped = new Set<net.Socket>();
  private held: Array<() => void> = [];
  /** Set by loseAnswers: what, sent by a client, makes the server's answers on its connection stop coming. */
  private loseAnswersAfter: ((sent: string) => boolean) | undefined;
  port = 0;
  constructor(private readonly target: { host: string; port: number }) {}

  /** A proxy up in front of the server of `databaseUrl` (connect through it with `through`). */
  static async inFrontOf(databaseUrl: string): Promise<Outage> {
    const target = new URL(databaseUrl);
    const outage = new Outage({ host: target.hostname, port: Number(target.port) });
    await outage.up();
    return outage;
  }

  /** `databaseUrl` (a URL of the server this proxy is in front of) through this proxy. */
  through(databaseUrl: string): string {
    const url = new URL(databaseUrl);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  async up(): Promise<void> {
    const server = net.createServer((inbound) => {
      const outbound = net.connect(this.target.port, this.target.host);
      this.inbound.add(inbound);
      inbound.on('close', () => this.inbound.delete(inbound));
      for (const socket of [inbound, outbound]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      const forward = (from: net.Socket, to: net.Socket) =>
        from.on('data', (chunk: Buffer) => {
          if (this.frozen || this.dropped.has(from)) this.held.push(() => to.write(chunk));
          else to.write(chunk);
          if (from === inbound && this.loseAnswersAfter?.(chunk.toString('latin1'))) {
            this.loseAnswersAfter = undefined;
            this.dropped.add(outbound);
          }
        });
      forward(inbound, outbound);
      forward(outbound, inbound);
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** Connections through the proxy that their client has not closed (nor the proxy cut). */
  get openConnections(): number {
    return this.inbound.size;
  }

  freeze(): void {
    this.frozen = true;
  }

  /**
   * The connections open now stop passing anything, silently, and stay open
   * (a blackhole: a NAT or a failover that forgot them, a partition); new
   * ones work. What is sent meanwhile is delivered at the thaw, as TCP
   * would retransmit it, to the connections still open then.
   */
  dropOpenConnections(): void {
    for (const socket of this.sockets) this.dropped.add(socket);
  }

  /**
   * The next time a client sends something `sent` matches (its bytes as
   * latin1, e.g. a simple-protocol `commit`), that reaches the server, and
   * from then on nothing the server sends on that connection comes back,
   * until the thaw: a statement that ran, whose answer was lost.
   */
  loseAnswers(sent: (bytes: string) => boolean): void {
    this.loseAnswersAfter = sent;
  }

  thaw(): void {
    this.frozen = false;
    this.loseAnswersAfter = undefined;
    this.dropped.clear();
    for (const send of this.held.splice(0)) send();
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
  }
}
