/** A simulation worker process: runs the seeds it is sent and answers with their results. */
import { simulate, type SimOptions } from './world.ts';

process.on('message', async (job: { seeds: number[]; options: Omit<SimOptions, 'seed'> }) => {
  for (const seed of job.seeds) process.send!({ result: await simulate({ ...job.options, seed }) });
  process.send!({ done: true });
});
