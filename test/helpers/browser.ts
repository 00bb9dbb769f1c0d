import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

const CHROMIUM = process.env.WB_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Debian's headless Chromium, driven by playwright-core (which never downloads a browser), with a
 * new empty profile per launch. Under CI it must exist (.ci/run installs it); elsewhere its absence
 * skips the test, loudly.
 */
export async function launchBrowser(): Promise<Browser | string> {
  if (!existsSync(CHROMIUM)) {
    const reason = `Chromium is not installed at ${CHROMIUM} (apt-get install chromium)`;
    if (process.env.CI) throw new Error(`${reason}, and CI must run browser tests`);
    console.warn(`\n*** SKIPPING browser tests: ${reason}. ***\n`);
    return `SKIPPED: ${reason}`;
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
