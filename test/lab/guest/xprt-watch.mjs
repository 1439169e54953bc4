// Lab only: when the NFS client's transport connects. Reads the "xprt:" line of the NFS mount in
// /proc/self/mountstats every 100 ms (its own process: the writer blocks in fsync through a
// failover) and logs each change of its connect count with the guest's monotonic time:
// "<ms> <local port> <connect_count>". The line: xprt: tcp <port> <bind_count> <connect_count> …
import { appendFileSync, readFileSync } from 'node:fs';

const [mountPoint, log] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let last = '';
for (;;) {
  const text = readFileSync('/proc/self/mountstats', 'utf8');
  const at = text.indexOf(` mounted on ${mountPoint} with fstype nfs4`);
  const m = at < 0 ? null : /^\s*xprt:\s+tcp\s+(\d+)\s+\d+\s+(\d+)/m.exec(text.slice(at));
  const now = `${m?.[1]} ${m?.[2]}`;
  if (m && now !== last) appendFileSync(log, `${(Number(process.hrtime.bigint() / 1000n) / 1000).toFixed(1)} ${now}\n`);
  if (m) last = now;
  await sleep(100);
}
