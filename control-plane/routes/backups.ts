/**
 * Online backups of the embedded store (admin only: a backup holds every credential's hash).
 * The store writes a consistent copy of itself to the data directory's `backups/` while it keeps
 * serving; the operator downloads it (`nfs-ha backup --out FILE`) and restores it by stopping
 * the control plane and starting it with `npm start -- --restore FILE`. On DynamoDB, point-in-time recovery
 * and on-demand backups do this job (README, "Backup and restore").
 */
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { ApiError } from '../errors.ts';
import { errors, jsonResponse, router } from './router.ts';

export interface Backups {
  /** Where backup files go (created 0700). */
  dir: string;
  take(path: string): Promise<{ entries: number }>;
}

const BackupName = z
  .string()
  .regex(/^nfs-ha-[0-9TZ-]{20,30}\.jsonl$/, 'must be a backup file name as POST /v1/backups returned it')
  .describe('A backup file name');

const BackupSchema = z.object({
  name: BackupName,
  entries: z.number().int().describe('Items of the store it holds (LevelDB entries, table metadata included)'),
  bytes: z.number().int(),
  takenAt: z.string(),
  path: z.string().describe("Where it is on the control plane's host"),
});

const tags = ['backups'];
const NOT_EMBEDDED =
  'this control plane keeps its state in DynamoDB: back it up with point-in-time recovery or an on-demand backup (README, "Backup and restore")';

export function backupsRouter(backups: Backups | undefined) {
  let running = false;
  return router()
    .openapi(
      createRoute({
        method: 'post',
        operationId: 'createBackup',
        path: '/v1/backups',
        tags,
        summary: 'Back up the embedded store now',
        description:
          "A consistent copy of the whole store (one LevelDB snapshot), taken while it keeps serving, written to the data directory's backups/. Restore: stop the control plane, then start it with npm start -- --restore FILE.",
        responses: { 201: jsonResponse(BackupSchema, 'The backup, on the control plane host'), ...errors(401, 403, 409) },
      }),
      async (c) => {
        if (!backups) throw new ApiError(409, 'backup_not_available', NOT_EMBEDDED);
        if (running) throw new ApiError(409, 'backup_in_progress', 'a backup is being taken; try again when it is done');
        running = true;
        try {
          await mkdir(backups.dir, { recursive: true, mode: 0o700 });
          const takenAt = new Date().toISOString();
          const name = `nfs-ha-${takenAt.replace(/[:.]/g, '-')}.jsonl`;
          const path = join(backups.dir, name);
          const { entries } = await backups.take(path);
          return c.json({ name, entries, bytes: (await stat(path)).size, takenAt, path }, 201);
        } finally {
          running = false;
        }
      },
    )
    .openapi(
      createRoute({
        method: 'get',
        operationId: 'downloadBackup',
        path: '/v1/backups/{name}',
        tags,
        summary: 'Download a backup',
        request: { params: z.object({ name: BackupName }) },
        responses: {
          200: { content: { 'application/x-ndjson': { schema: z.string() } }, description: 'The backup file' },
          ...errors(400, 401, 403, 404, 409),
        },
      }),
      async (c) => {
        if (!backups) throw new ApiError(409, 'backup_not_available', NOT_EMBEDDED);
        const { name } = c.req.valid('param');
        const path = join(backups.dir, name);
        const size = await stat(path).then(
          (s) => s.size,
          () => null,
        );
        if (size === null) throw new ApiError(404, 'backup_not_found', `no backup ${name}`);
        const body = Readable.toWeb(createReadStream(path)) as ReadableStream;
        return new Response(body, { status: 200, headers: { 'content-type': 'application/x-ndjson', 'content-length': String(size) } }) as never;
      },
    );
}
