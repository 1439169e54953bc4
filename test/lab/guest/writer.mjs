// Lab only: the NFS client's application. Appends numbered records to a file on the NFS mount,
// fsync after each, and logs every acknowledged record with the guest's monotonic time to a
// local file. A hard mount makes a failover a stall, never an error; any error ends the run.
import { appendFileSync, fsyncSync, openSync, writeSync } from 'node:fs';

const [file, ackLog, intervalArg] = process.argv.slice(2);
const intervalMs = Number(intervalArg ?? 50);
const fd = openSync(file, 'a');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let n = 0;
for (;;) {
  n += 1;
  writeSync(fd, `${String(n).padStart(10, '0')}\n`);
  fsyncSync(fd);
  appendFileSync(ackLog, `${n} ${(Number(process.hrtime.bigint() / 1000n) / 1000).toFixed(1)}\n`);
  await sleep(intervalMs);
}
