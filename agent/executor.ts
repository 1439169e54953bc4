/**
 * The one way the agent runs a command: execFile with an argument array (never a shell), a
 * timeout, captured output, a fixed C locale (so output parses the same everywhere), and one
 * structured log line per run with its duration.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';

export interface Command {
  /** Program and arguments; every element reaches the program as one argument, unparsed. */
  argv: readonly [string, ...string[]];
  timeoutMs: number;
  /** Written to the command's standard input (e.g. a file's content for `tee FILE`; it is a socket, so `/dev/stdin` cannot be opened). */
  input?: string;
  /**
   * Holds the input back until this settles: the process starts now and waits on its standard
   * input for the word to go on (the tickles, made ready as a takeover begins, sent once the VIP is
   * up). Rejected: the input is closed unwritten. The timeout counts from the start.
   */
  inputWhen?: Promise<unknown>;
}

export interface CommandResult {
  argv: readonly string[];
  /** Exit code, or null when the process was killed (timeout, signal). */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface Executor {
  run(command: Command): Promise<CommandResult>;
}

/** The Debian package of each program the agent runs (the preflight names it when one is missing). */
export const PROGRAM_PACKAGES: Readonly<Record<string, string>> = {
  sg_persist: 'sg3-utils',
  lvm: 'lvm2',
  vgs: 'lvm2',
  vgchange: 'lvm2',
  exportfs: 'nfs-kernel-server',
  ip: 'iproute2',
  arping: 'arping',
  blkid: 'util-linux',
  findmnt: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  fuser: 'psmisc',
  systemctl: 'systemd',
  mkdir: 'coreutils',
  getent: 'libc-bin',
  perl: 'perl-base',
};

/** Exit status of a program that could not be started (not installed, not on PATH). */
const NOT_FOUND = 127;

/** How a command ended other than with 0, and its last words: "exited 5: …", or the package to install. */
export function failureText(result: CommandResult): string {
  const program = result.argv[0] ?? '';
  if (result.exitCode === NOT_FOUND && /ENOENT/.test(result.stderr)) return `cannot run: ${program} is not installed (Debian package ${PROGRAM_PACKAGES[program] ?? 'unknown'})`;
  const how = result.timedOut ? `timed out after ${Math.round(result.durationMs)} ms` : result.signal ? `was killed by ${result.signal}` : `exited ${result.exitCode}`;
  const detail = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ');
  return `${how}${detail ? `: ${detail}` : ''}`;
}

/** A command that ended other than expected; carries the whole result for logs and reports. */
export class CommandFailed extends Error {
  constructor(
    readonly result: CommandResult,
    what?: string,
  ) {
    super(`${what ?? formatArgv(result.argv)} ${failureText(result)}`);
    this.name = 'CommandFailed';
  }
}

/** The argv as a person would type it (quoted for display only; nothing is ever run through a shell). */
export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** A recorded command for display: the argv, and its standard input as a here-document. */
export function formatCommand(c: { argv: readonly string[]; input?: string }): string {
  return c.input === undefined ? formatArgv(c.argv) : `${formatArgv(c.argv)} <<'EOF'\n${c.input.replace(/\n$/, '')}\nEOF`;
}

/** Throws CommandFailed unless the exit code is one of `ok` (default: 0). */
export function expectExit(result: CommandResult, ok: readonly number[] = [0], what?: string): CommandResult {
  if (result.exitCode === null || !ok.includes(result.exitCode)) throw new CommandFailed(result, what);
  return result;
}

const ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', LANG: 'C' };
const MAX_OUTPUT = 4 * 1024 * 1024;

/** Runs commands on this host. */
export class HostExecutor implements Executor {
  constructor(
    private readonly log: Logger,
    /** Told of every result (the agent's metrics). */
    private readonly onResult: (result: CommandResult) => void = () => {},
  ) {}

  run(command: Command): Promise<CommandResult> {
    const [file, ...args] = command.argv;
    const started = performance.now();
    return new Promise((resolve) => {
      const child = execFile(
        file,
        args,
        { shell: false, timeout: Math.ceil(command.timeoutMs), killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT, env: ENV, encoding: 'utf8', windowsHide: true },
        (error, stdout, stderr) => {
          const e = error as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string }) | null;
          const durationMs = performance.now() - started;
          const timedOut = !!e?.killed && durationMs >= command.timeoutMs;
          const spawnFailed = typeof e?.code === 'string';
          const result: CommandResult = {
            argv: command.argv,
            exitCode: e ? (typeof e.code === 'number' ? e.code : spawnFailed ? NOT_FOUND : null) : 0,
            signal: e?.signal ?? null,
            timedOut,
            stdout,
            stderr: spawnFailed ? `${stderr}${e!.message}` : stderr,
            durationMs,
          };
          const fields = { cmd: formatArgv(command.argv), exitCode: result.exitCode, ms: Math.round(durationMs), ...(timedOut && { timedOut }) };
          if (result.exitCode === 0) this.log.debug(fields, 'command');
          else this.log.info({ ...fields, stderr: stderr.trim().slice(0, 500) }, 'command');
          this.onResult(result);
          resolve(result);
        },
      );
      // A command may exit without reading its input; that is its business, not an error here.
      child.stdin?.on('error', () => {});
      if (command.inputWhen) command.inputWhen.then(() => child.stdin?.end(command.input), () => child.stdin?.end());
      else child.stdin?.end(command.input);
    });
  }
}

/** A command as a phase report lists it: what ran, and for how long. */
export interface CommandTime {
  command: string;
  ms: number;
}

/** How much of a command a phase report shows (the schema's limit). */
const REPORTED_COMMAND_CHARS = 300;

/**
 * Which commands a piece of work (a takeover's phase) ran, however many other tasks run commands
 * meanwhile: the monitors, the peer channel's tickles, prepare() still finishing beside the first
 * takeover. Each result is booked to the work whose async context started the command.
 */
export class CommandLedger {
  readonly #current = new AsyncLocalStorage<CommandTime[]>();

  /** Runs `work`, listing into `into` each command it runs, in the order they end. */
  track<T>(into: CommandTime[], work: () => Promise<T>): Promise<T> {
    return this.#current.run(into, work);
  }

  /** Books a result (the executor's onResult) to the work running it, if any. */
  record(result: CommandResult): void {
    this.#current.getStore()?.push({ command: formatArgv(result.argv).slice(0, REPORTED_COMMAND_CHARS), ms: Math.round(result.durationMs) });
  }
}

/** How a recording executor answers a command it does not run. */
export type Responder = (argv: readonly string[]) => Partial<Pick<CommandResult, 'exitCode' | 'stdout' | 'stderr'>>;

/**
 * For --dry-run: records each command instead of running it, answering queries through a
 * responder that describes the node the dry run assumes (see agent/dry-run.ts).
 */
export class RecordingExecutor implements Executor {
  readonly commands: { argv: string[]; input?: string }[] = [];

  constructor(private readonly respond: Responder) {}

  async run(command: Command): Promise<CommandResult> {
    this.commands.push({ argv: [...command.argv], ...(command.input !== undefined && { input: command.input }) });
    return { argv: command.argv, exitCode: 0, signal: null, timedOut: false, stdout: '', stderr: '', durationMs: 0, ...this.respond(command.argv) };
  }
}
