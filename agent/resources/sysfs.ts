/** /sys/block as the resources read it: under `root`, which tests point at a tree rebuilt from a real listing. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export function sysBlock(root: string): { dir: string; read: (path: string) => Promise<string> } {
  const dir = join(root, 'sys/block');
  // An attribute's trimmed text; '' when absent (a device that went away between listing and reading).
  return {
    dir,
    read: (path) =>
      readFile(join(dir, path), 'utf8').then(
        (s) => s.trim(),
        () => '',
      ),
  };
}
