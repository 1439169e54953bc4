import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { exampleExposition } from '../helpers/metrics-example.ts';
import { families } from '../helpers/prometheus.ts';

const dir = new URL('../../infra/monitoring/', import.meta.url);
const alerts = parse(readFileSync(new URL('alerts.yml', dir), 'utf8')) as {
  groups: { name: string; rules: { alert: string; expr: string; for?: string; labels: Record<string, string>; annotations: Record<string, string> }[] }[];
};
const dashboard = JSON.parse(readFileSync(new URL('grafana-dashboard.json', dir), 'utf8')) as {
  panels: { id: number; title: string; gridPos: { x: number; y: number; w: number; h: number }; targets: { expr: string }[] }[];
  templating: { list: { definition: string }[] };
};

/** The metric families an expression reads (a histogram's _bucket, _count and _sum are its family). */
function familiesUsed(expr: string): string[] {
  return [...expr.matchAll(/\bnfsha_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, ''));
}

const exposition = await exampleExposition();
const exported = new Set([...families(exposition.controlPlane), ...families(exposition.agent)]);

describe('monitoring kit (infra/monitoring)', () => {
  const rules = alerts.groups.flatMap((g) => g.rules);

  it('the alerts the README promises are there, each with a severity, a summary and a description', () => {
    assert.deepEqual(
      rules.map((r) => r.alert),
      ['NfsHaNoActiveHolder', 'NfsHaFailover', 'NfsHaFencingNotConfirmed', 'NfsHaNodeDown', 'NfsHaFailsafe', 'NfsHaWebhookFailing', 'NfsHaAgentCannotReachArbiter', 'NfsHaResourceFailed'],
    );
    for (const r of rules) {
      assert.ok(['critical', 'warning'].includes(r.labels.severity!), `${r.alert}: severity ${r.labels.severity}`);
      assert.ok(r.annotations.summary && r.annotations.description, `${r.alert}: summary and description`);
    }
  });

  it('every metric an alert or a dashboard panel reads is one the control plane or the agent exports', () => {
    const exprs = [...rules.map((r) => [r.alert, r.expr]), ...dashboard.panels.flatMap((p) => p.targets.map((t) => [p.title, t.expr])), ...dashboard.templating.list.map((v) => ['variable', v.definition])];
    for (const [where, expr] of exprs) {
      const used = familiesUsed(expr!);
      assert.ok(used.length > 0, `${where}: reads no nfs-ha metric (${expr})`);
      for (const f of used) assert.ok(exported.has(f), `${where}: ${f} is not exported (${expr})`);
    }
  });

  it("the dashboard's panels have unique ids and fit the 24-column grid without overlapping", () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title} is outside the grid`);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel at ${x},${y}`);
          cells.add(`${x},${y}`);
        }
    }
  });
});
