/**
 * Lab only: one guest of the lab — a qemu TCG process with its own kernel, a persistent qcow2
 * overlay over the shared image (so a power cycle keeps its disk, as a real node's would), and
 * the host's share mounted read-only at /lab. The host drives it through the guest helper.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';

export interface ExecResult {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Sample {
  t: number;
  vgActive: boolean;
  vip: boolean;
}

export interface VmOptions {
  name: string;
  /** Its address on the first network (10.99.0.0/24); on the second (10.99.1.0/24) the same host number. */
  address: string;
  mac: string;
  imageDir: string;
  runDir: string;
  shareDir: string;
  /** Extra raw disks (the storage side's LUN). */
  disks?: string[];
  memoryMiB?: number;
}

const HELPER_PORT = 7000;

export class Vm {
  #process: ChildProcess | null = null;
  /** A guest's reset powers it on again once this settles (holdingResets). */
  #resetHold: Promise<void> = Promise.resolve();
  readonly overlay: string;

  constructor(readonly o: VmOptions) {
    this.overlay = join(o.runDir, `${o.name}.qcow2`);
  }

  get name(): string {
    return this.o.name;
  }

  /** Its address on the second network (the SAN's second fabric). */
  get address2(): string {
    return this.o.address.replace(/^10\.99\.0\./, '10.99.1.');
  }

  /** Its serial console, appended across its boots (a self-fence's reason lands here). */
  get consoleLog(): string {
    return join(this.o.runDir, `${this.o.name}.console.log`);
  }

  get pid(): number | undefined {
    return this.#process?.pid;
  }

  /** Powers the VM on; its disk (the overlay) survives power cycles within one lab run. */
  start(): void {
    if (!existsSync(this.overlay)) {
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(this.o.imageDir, 'root.img'), this.overlay]);
    }
    // tsc=reliable: under TCG the guest's TSC follows the host's clock, so a SIGSTOP of the VM
    // shows in the guest as time passed, as on a real node (the freeze scenario's premise). The
    // clocksource watchdog may otherwise mark the TSC unstable while the VM is starved and fall
    // back to the emulated HPET, across which a SIGSTOP's time is lost (measured on this image:
    // uptime +35 s across a 35 s SIGSTOP on tsc, +1.2 s across 30 s on hpet) — a paused clock,
    // a different fault, tested by chance (stop 26's red CI).
    const append = ['root=/dev/vda', 'rw', 'console=ttyS0', 'net.ifnames=0', 'panic=1', 'tsc=reliable', `nfsha.role=${this.o.name}`, `nfsha.addr=${this.o.address}`, `nfsha.addr2=${this.address2}`];
    const args = [
      ...['-accel', 'tcg,tb-size=128', '-cpu', 'max', '-m', String(this.o.memoryMiB ?? 768), '-smp', '1'],
      // -no-reboot: a reset in the guest (its watchdog, a self-fence, a panic) ends qemu; the exit
      // handler below powers it on again, at once or once holdingResets' work ends.
      ...['-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none', '-monitor', 'none'],
      ...['-chardev', `file,id=console,path=${this.consoleLog},append=on`, '-serial', 'chardev:console'],
      ...['-kernel', join(this.o.imageDir, 'vmlinuz'), '-initrd', join(this.o.imageDir, 'initrd.img'), '-append', append.join(' ')],
      ...['-drive', `file=${this.overlay},if=virtio,format=qcow2,cache=unsafe`],
      ...(this.o.disks ?? []).flatMap((d) => ['-drive', `file=${d},if=virtio,format=raw,cache=none,aio=threads`]),
      ...['-netdev', `tap,id=net0,ifname=tap-${this.o.name},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=net0,mac=${this.o.mac}`],
      ...['-netdev', `tap,id=net1,ifname=tap-${this.o.name}-1,script=no,downscript=no`, '-device', `virtio-net-pci,netdev=net1,mac=${this.o.mac.replace(/:00:([0-9a-f]{2})$/, ':01:$1')}`],
      ...['-virtfs', `local,path=${this.o.shareDir},mount_tag=lab,security_model=none,readonly=on`],
    ];
    const p = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    this.#process = p;
    p.on('exit', (code) => {
      if (this.#process === p) this.#process = null;
      // Exit 0 is the guest's reset; a power-off is a SIGKILL.
      if (code === 0) void this.#resetHold.then(() => this.#process ?? this.start());
    });
  }

  /**
   * While `work` runs, a reset of this guest leaves it powered off; it powers on once `work` ends.
   * On hardware a node that its watchdog resets during its peer's takeover takes nothing from the
   * peer; here its boot would take one of the host's two cores from the takeover being measured.
   */
  async holdingResets<T>(work: () => Promise<T>): Promise<T> {
    let release!: () => void;
    this.#resetHold = new Promise((ok) => (release = ok));
    try {
      return await work();
    } finally {
      release();
    }
  }

  get running(): boolean {
    return this.#process !== null;
  }

  /** Power loss: the qemu process dies at once, nothing in the guest runs another instruction. */
  async powerOff(): Promise<void> {
    const p = this.#process;
    if (!p) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  freeze(): void {
    this.#process?.kill('SIGSTOP');
  }

  thaw(): void {
    this.#process?.kill('SIGCONT');
  }

  /**
   * One call to the guest helper. Plain node:http, not fetch: fetch gives up on any answer whose
   * headers take over 300 s (undici's headersTimeout), and a command under TCG may take longer
   * (the installer's re-run on a busy active node); here `timeoutMs` alone decides.
   */
  #request<T>(path: string, init: { method?: string; body?: string; timeoutMs: number }): Promise<T> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        // A connection of its own (agent: false): the pooled keep-alive ones have TCP keepalive
        // probes on, and one failed a request with "read ETIMEDOUT" while its TCG guest was
        // starved (path-cut, stop 24's CI); here `timeoutMs` alone decides.
        { host: this.o.address, port: HELPER_PORT, path, method: init.method ?? 'GET', agent: false, timeout: init.timeoutMs, headers: init.body ? { 'content-type': 'application/json' } : {} },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('error', reject);
          res.on('end', () => {
            if ((res.statusCode ?? 0) >= 300) reject(new Error(`${this.name} ${path}: HTTP ${res.statusCode} ${text}`));
            else {
              try {
                resolve(JSON.parse(text) as T);
              } catch (err) {
                reject(err as Error);
              }
            }
          });
        },
      );
      const timer = setTimeout(() => req.destroy(new Error(`${this.name} ${path}: no answer within ${init.timeoutMs / 1000} s`)), init.timeoutMs);
      req.on('close', () => clearTimeout(timer));
      req.on('timeout', () => req.destroy(new Error(`${this.name} ${path}: the connection stalled for ${init.timeoutMs / 1000} s`)));
      req.on('error', reject);
      req.end(init.body);
    });
  }

  /** Waits until the guest helper answers (the guest booted). */
  async waitUp(timeoutMs: number): Promise<number> {
    const started = performance.now();
    for (;;) {
      try {
        await this.sample('none', 'none', 1000);
        return performance.now() - started;
      } catch {
        if (performance.now() - started > timeoutMs)
          throw new Error(`${this.name} did not come up within ${timeoutMs / 1000} s (see ${this.name}.console.log)`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  sample(vg: string, vip: string, timeoutMs = 1000): Promise<Sample> {
    return this.#request(`/sample?vg=${encodeURIComponent(vg)}&vip=${encodeURIComponent(vip)}`, { timeoutMs });
  }

  exec(argv: string[], timeoutMs = 60_000): Promise<ExecResult> {
    return this.#request('/exec', { method: 'POST', body: JSON.stringify({ argv, timeoutMs }), timeoutMs: timeoutMs + 5000 });
  }

  /** Runs a command and fails with its output unless it exits 0. */
  async run(argv: string[], timeoutMs = 60_000): Promise<string> {
    const r = await this.exec(argv, timeoutMs);
    if (r.code !== 0)
      throw new Error(`${this.name}: ${argv.join(' ')} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`);
    return r.stdout;
  }

  async write(path: string, content: string, mode = 0o644): Promise<void> {
    await this.#request('/write', { method: 'POST', body: JSON.stringify({ path, content, mode }), timeoutMs: 10_000 });
  }
}
