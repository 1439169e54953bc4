/** Reads the real tool output fixtures (format: test/fixtures/real-tool-output/README.md). */
import { readFileSync } from 'node:fs';
import type { Command, CommandResult, Executor } from '../../agent/executor.ts';

export interface Fixture {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
}

export function fixture(name: string): Fixture {
  const text = readFileSync(new URL(`../fixtures/real-tool-output/${name}.txt`, import.meta.url), 'utf8');
  const marker = text.indexOf('# --- stderr ---\n');
  if (marker < 0) throw new Error(`${name}: no stderr marker`);
  const lines = text.slice(0, marker).split('\n');
  const header = lines.slice(
    0,
    lines.findIndex((l) => !l.startsWith('# ')),
  );
  const field = (key: string) =>
    header
      .find((l) => l.startsWith(`# ${key}:`))
      ?.slice(key.length + 3)
      .trim();
  const noteAddedNewline = header.some((l) => l.startsWith('# note:') && /no trailing newline/.test(l));
  let stdout = lines.slice(header.length).join('\n');
  if (noteAddedNewline && stdout.endsWith('\n')) stdout = stdout.slice(0, -1);
  return { command: field('command')!, exitCode: Number(field('exit code')), stdout, stderr: text.slice(marker + '# --- stderr ---\n'.length) };
}

/** The result a command would get if the node answered as in a fixture. */
export function asResult(f: Pick<Fixture, 'exitCode' | 'stdout' | 'stderr'>): Omit<CommandResult, 'argv'> {
  return { exitCode: f.exitCode, signal: null, timedOut: false, stdout: f.stdout, stderr: f.stderr, durationMs: 1 };
}

type Answer = Pick<Fixture, 'exitCode' | 'stdout' | 'stderr'>;
const OK: Answer = { exitCode: 0, stdout: '', stderr: '' };

/**
 * Test executor: records every argv and answers from a script of (predicate, answer) rules —
 * the first rule whose predicate matches the command line wins; unmatched commands succeed
 * silently. Answers may be queues (consumed one per call) to model state changing.
 */
export class ScriptedExecutor implements Executor {
  readonly calls: string[][] = [];
  readonly #rules: { match: (line: string) => boolean; answers: Answer[] }[] = [];

  on(match: string | RegExp, ...answers: (Answer | string)[]): this {
    const test = typeof match === 'string' ? (l: string) => l === match : (l: string) => match.test(l);
    this.#rules.push({ match: test, answers: answers.map((a) => (typeof a === 'string' ? fixture(a) : a)) });
    return this;
  }

  async run(command: Command): Promise<CommandResult> {
    this.calls.push([...command.argv]);
    const line = command.argv.join(' ');
    const rule = this.#rules.find((r) => r.match(line));
    const answer = rule ? (rule.answers.length > 1 ? rule.answers.shift()! : rule.answers[0]!) : OK;
    return { argv: command.argv, ...asResult(answer) };
  }

  lines(): string[] {
    return this.calls.map((c) => c.join(' '));
  }
}
