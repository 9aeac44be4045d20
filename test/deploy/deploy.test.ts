/**
 * The files under deploy/: alert rules checked and unit-tested by the real promtool, the
 * Prometheus config checked, the Grafana dashboard and the alerts naming only metrics botqueue
 * exposes, docs/metrics.md listing every one, and the compose file's mounts present.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ProcessMetrics } from '../../src/observability/metrics.js';
import { StatsGauges } from '../../src/observability/stats-gauges.js';
import { promtool, skipWithout } from '../support/tools.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const deploy = join(root, 'deploy');

async function exposedFamilies(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const registry of [new ProcessMetrics().registry, new StatsGauges(() => Promise.resolve([])).registry]) {
    for (const metric of await registry.getMetricsAsJSON()) names.add(metric.name);
  }
  return names;
}

/** Metric families an expression names (histogram series reduced to their family). */
function familiesIn(text: string): string[] {
  return [...text.matchAll(/\bbotqueue_[a-z_]+/g)].map(([name]) => name.replace(/_(bucket|count|sum)$/, '')).filter((name) => !/^botqueue_(dlq|groups|topics|start)$/.test(name));
}

describe('deploy/', () => {
  test('promtool: the alert rules are valid and their unit tests pass; the Prometheus config is valid', async (t) => {
    const skip = skipWithout('promtool', "Debian's prometheus package");
    if (skip !== undefined) return t.skip(skip);
    const rules = await promtool(['check', 'rules', join(deploy, 'prometheus', 'alerts.yml')]);
    assert.equal(rules.code, 0, rules.output);
    assert.match(rules.output, /SUCCESS: 7 rules found/);
    const tests = await promtool(['test', 'rules', join(deploy, 'prometheus', 'alerts.test.yml')]);
    assert.equal(tests.code, 0, tests.output);
    assert.match(tests.output, /SUCCESS/);
    // The compose file mounts the rules and the token at absolute paths: check a copy pointing here.
    const dir = mkdtempSync(join(tmpdir(), 'bq-prom-'));
    try {
      copyFileSync(join(deploy, 'prometheus', 'alerts.yml'), join(dir, 'alerts.yml'));
      writeFileSync(join(dir, 'token'), 'a-token-for-the-check-0123456789\n');
      const config = readFileSync(join(deploy, 'prometheus', 'prometheus.yml'), 'utf8')
        .replace('/etc/prometheus/alerts.yml', join(dir, 'alerts.yml'))
        .replace('/etc/prometheus/botqueue-admin-token', join(dir, 'token'));
      writeFileSync(join(dir, 'prometheus.yml'), config);
      const checked = await promtool(['check', 'config', join(dir, 'prometheus.yml')]);
      assert.equal(checked.code, 0, checked.output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the Grafana dashboard, the alerts and docs/metrics.md name exactly the metrics botqueue exposes', async () => {
    const exposed = await exposedFamilies();
    const dashboard = JSON.parse(readFileSync(join(deploy, 'grafana', 'botqueue.json'), 'utf8')) as { uid: string; panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    assert.equal(dashboard.uid, 'botqueue');
    const used = new Set<string>();
    for (const panel of dashboard.panels) {
      assert.ok(panel.targets.length > 0, panel.title);
      for (const target of panel.targets) for (const name of familiesIn(target.expr)) used.add(name);
    }
    const alerts = readFileSync(join(deploy, 'prometheus', 'alerts.yml'), 'utf8');
    for (const name of [...used, ...familiesIn(alerts.split('\n').filter((l) => /^\s+expr:|^\s{10}/.test(l)).join('\n'))]) {
      assert.ok(exposed.has(name), `${name} is not a metric botqueue exposes`);
    }
    const missingFromDashboard = [...exposed].filter((name) => !used.has(name) && !['botqueue_retained_messages', 'botqueue_topic_without_groups_messages', 'botqueue_topics', 'botqueue_stats_scrape_duration_seconds'].includes(name));
    assert.deepEqual(missingFromDashboard, [], 'every metric has a panel (or is listed here as not charted)');
    const docs = readFileSync(join(root, 'docs', 'metrics.md'), 'utf8');
    for (const name of exposed) assert.match(docs, new RegExp(`\`${name}\``), `docs/metrics.md lists ${name}`);
  });

  test('docker-compose.yml mounts files that exist', () => {
    const compose = readFileSync(join(deploy, 'docker-compose.yml'), 'utf8');
    for (const service of ['botqueue:', 'prometheus:', 'grafana:']) assert.match(compose, new RegExp(`^  ${service}`, 'm'));
    const mounts = [...compose.matchAll(/- (\.\/[\w/.-]+):/g)].map(([, path]) => path!);
    assert.ok(mounts.length >= 5, mounts.join(', '));
    for (const path of mounts) {
      if (path === './botqueue-admin-token') continue; // the user writes it (see the file's header)
      assert.ok(existsSync(join(deploy, path)), `${path} exists`);
    }
  });
});
