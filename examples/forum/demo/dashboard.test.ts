/**
 * The local dashboard of `npm start -- --serve`, opened in a real browser: Debian's Chromium
 * driven by playwright-core (`.ci/run` installs the `chromium` package, as it does redis-server).
 * Set REGIONAL_DASHBOARD_SCREENSHOT to a path to keep a screenshot of the page after the write.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const REGIONS = ['iad', 'cdg', 'syd'];

describe.skipIf(!existsSync(CHROMIUM))(
  `the dashboard of regional demo --serve, in Chromium${existsSync(CHROMIUM) ? '' : ` (skipped: no ${CHROMIUM}; apt-get install chromium)`}`,
  () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'regional-dashboard-'));
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'bin/regional.js'), 'demo', '--serve', '--dir', dir],
      { cwd: ROOT },
    );
    const out = { stdout: '', stderr: '' };
    child.stdout.on('data', (d) => (out.stdout += d));
    child.stderr.on('data', (d) => (out.stderr += d));
    const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let browser: Browser;
    let dashboard: string;

    beforeAll(async () => {
      const launched = chromium.launch({ executablePath: CHROMIUM, chromiumSandbox: false });
      while (!out.stdout.includes('\n')) {
        if (child.exitCode !== null) throw new Error(`the demo exited early: ${out.stderr}`);
        await sleep(100);
      }
      const ready = JSON.parse(out.stdout) as {
        regions: Record<string, string>;
        dashboard: string;
      };
      expect(Object.keys(ready.regions)).toEqual(REGIONS);
      dashboard = ready.dashboard;
      browser = await launched;
    });

    afterAll(async () => {
      await browser?.close();
      if (child.exitCode === null) {
        child.kill('SIGINT');
        expect(await exit).toBe(0);
      }
    });

    it('shows every region with its lag, and a write in syd arrives in iad, cdg and syd', async () => {
      expect(dashboard).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      await page.goto(dashboard);
      await expect
        .poll(() => page.locator('#local-only').textContent())
        .toMatch(/local runs only/i);

      // Three regions, each with its lag: a figure read from its replica's gauge, or, in the
      // primary region, 0 (it is where the writes happen) and the word that it is the primary.
      const cards = page.locator('section.card');
      await expect
        .poll(() => cards.evaluateAll((n) => n.map((c) => c.dataset.region)))
        .toEqual(REGIONS);
      for (const region of REGIONS) {
        const lag = page.locator(`[data-region="${region}"] .lag`);
        if (region === 'iad') {
          await expect.poll(() => lag.getAttribute('data-lag')).toBe('0');
          expect(await lag.textContent()).toMatch(/^lag 0 ms the primary/);
          continue;
        }
        await expect
          .poll(() => lag.getAttribute('data-lag'), { timeout: 10_000 })
          .toMatch(/^\d+(\.\d+)?(e-?\d+)?$/);
        expect(await lag.textContent()).toMatch(/^lag \d+(\.\d+)? (ms|s) /);
        expect(await page.locator(`[data-region="${region}"] svg.chart path`).count()).toBe(1);
      }
      // The dashboard's own reads show where each ran.
      await expect
        .poll(() => page.locator('#requests td').allTextContents(), { timeout: 10_000 })
        .toEqual(expect.arrayContaining(['GET /api/topics', 'syd', 'cdg', 'iad']));

      await page.selectOption('#write-region', 'syd');
      await page.click('#write-button');
      const status = page.locator('#write-status');
      await expect
        .poll(() => status.getAttribute('data-state'), { timeout: 20_000, interval: 100 })
        .toBe('done');
      expect(await status.textContent()).toMatch(/in syd: done · ran in iad/);
      const arrivals = page.locator('#arrivals tr[data-arrival]');
      expect(
        await arrivals.evaluateAll((rows) =>
          rows.map((r) => [r.getAttribute('data-arrival'), r.getAttribute('data-state')]),
        ),
      ).toEqual(REGIONS.map((r) => [r, 'arrived']));
      // In syd the read back carried the write's token; elsewhere none did.
      expect(await page.locator('[data-arrival="syd"] td').nth(1).textContent()).toMatch(/token/);
      expect(await page.locator('[data-arrival="cdg"] td').nth(1).textContent()).toBe('no token');

      const screenshot = process.env.REGIONAL_DASHBOARD_SCREENSHOT;
      if (screenshot) {
        await sleep(1_500); // a few more points on the lag charts
        await page.screenshot({ path: screenshot, fullPage: true });
      }
      expect(errors).toEqual([]);
      await page.close();
    });

    it('answers only this machine and refuses writes that are not JSON', async () => {
      // A page of another name resolving to 127.0.0.1 (DNS rebinding): fetch cannot set Host.
      const { port } = new URL(dashboard);
      const foreign = await new Promise<number | undefined>((resolve, reject) =>
        http
          .get(
            {
              host: '127.0.0.1',
              port,
              path: '/api/state',
              headers: { host: `evil.example:${port}` },
            },
            (res) => {
              res.resume();
              resolve(res.statusCode);
            },
          )
          .on('error', reject),
      );
      expect(foreign).toBe(403);
      const form = await fetch(`${dashboard}/api/write`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'region=syd',
      });
      expect(form.status).toBe(415);
    });
  },
);
