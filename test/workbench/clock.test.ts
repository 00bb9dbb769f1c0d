import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { SimulatedClock, wallClock } from '../../src/workbench/clock.js';

const T0 = Date.parse('2025-01-01T00:00:00Z');
const HOUR = 3_600_000;

describe('clocks', () => {
  it('the wall clock is the machine time', () => {
    const before = Date.now();
    const now = wallClock.now();
    assert.ok(now >= before && now <= Date.now());
    assert.equal(wallClock.kind, 'wall');
  });

  it('a simulated clock stands still until it runs, then advances at its speed up to its bound', async () => {
    const clock = new SimulatedClock(T0);
    await sleep(30);
    assert.equal(clock.now(), T0, 'stands still before run');
    clock.run(36_000, T0 + 10 * HOUR); // 36,000 simulated ms per ms: an hour in 100 ms
    const wallStart = Date.now();
    await sleep(120);
    const advanced = clock.now() - T0;
    const expected = (Date.now() - wallStart) * 36_000;
    assert.ok(advanced > 0.8 * HOUR && Math.abs(advanced - expected) <= 36_000 * 5, `advanced ${advanced / HOUR} h, expected ${expected / HOUR} h`);
    clock.run(1e9, T0 + 2 * HOUR);
    await sleep(20);
    assert.equal(clock.now(), T0 + 2 * HOUR, 'never past its bound');
  });

  it('never goes backwards, and jumps forward on demand', () => {
    const clock = new SimulatedClock(T0);
    clock.advanceTo(T0 + HOUR);
    assert.equal(clock.now(), T0 + HOUR);
    clock.advanceTo(T0);
    assert.equal(clock.now(), T0 + HOUR, 'an earlier time does not move it back');
    clock.run(0, T0);
    assert.equal(clock.now(), T0 + HOUR, 'a bound behind it does not move it back');
    clock.run(Number.POSITIVE_INFINITY, T0 + 5 * HOUR);
    assert.equal(clock.now(), T0 + 5 * HOUR, 'infinite speed is at the bound at once');
  });

  it('refuses a start or speed that is not a number', () => {
    assert.throws(() => new SimulatedClock(Number.NaN), /finite start/);
    const clock = new SimulatedClock(T0);
    assert.throws(() => clock.run(-1), /speed must be 0 or more/);
    assert.throws(() => clock.run(Number.NaN), /speed must be 0 or more/);
  });
});
