import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chiSquareSf, normalCdf, normalQuantile, tCdf } from '../../../src/workbench/stats/distributions.js';
import { benjaminiHochberg, moments, sampleRatioMismatch, welch, type Moments } from '../../../src/workbench/stats/two-sample.js';

/**
 * The values scipy publishes in its documented examples (the docstrings of scipy/scipy,
 * scipy/stats/_stats_py.py and scipy/stats/_morestats.py; scipy.special's pages for the
 * distributions), each to its printed precision:
 * - a Python float is printed in full (its repr, 16-17 significant digits): checked to 1e-13
 *   relative, since two correct implementations of the incomplete beta or gamma function differ in
 *   the last few digits (the largest difference here is 3.5e-14, a t tail at 348 degrees of freedom);
 * - a NumPy array is printed to 8 decimals (NumPy's default print precision; trailing zeros
 *   dropped): checked to half a unit of the 8th decimal.
 * scipy's first sample is our treatment and its second our control: its statistic is
 * (mean1 - mean2) / se, ours (treatment - control) / se.
 */
const full = (got: number, want: number) => assert.ok(Math.abs(got - want) <= 1e-13 * Math.abs(want), `${got} vs ${want} (printed in full)`);
const eightDecimals = (got: readonly number[], want: readonly number[]) => {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]!) <= 0.5e-8, `[${i}] ${g} vs ${want[i]} (printed to 8 decimals)`));
};
/** The t statistic of an estimate: scipy prints the statistic, we keep the estimate and its standard error. */
const tStatistic = (e: { estimate?: number; se?: number }) => e.estimate! / e.se!;
/** Moments of raw values, through the sufficient statistics the engine works from. */
const ofValues = (values: readonly number[]): Moments =>
  moments({ n: values.length, sum: values.reduce((s, x) => s + x, 0), sumSquares: values.reduce((s, x) => s + x * x, 0) });

describe("scipy's documented examples", () => {
  it("ttest_ind_from_stats (equal_var=True, the default): Student's pooled t, summary data 13/15.0/87.5 against 11/12.0/39.0", () => {
    // >>> ttest_ind_from_stats(mean1=15.0, std1=np.sqrt(87.5), nobs1=13, mean2=12.0, std2=np.sqrt(39.0), nobs2=11)
    // Ttest_indResult(statistic=0.9051358093310269, pvalue=0.3751996797581487)
    const pooled = welch({ n: 11, mean: 12, variance: 39 }, { n: 13, mean: 15, variance: 87.5 }, { equalVariance: true });
    full(tStatistic(pooled), 0.9051358093310269);
    full(pooled.pValue!, 0.3751996797581487);
    // Welch's test (the engine's default) reads the same data differently: its statistic is not the pooled one.
    assert.ok(Math.abs(tStatistic(welch({ n: 11, mean: 12, variance: 39 }, { n: 13, mean: 15, variance: 87.5 })) - 0.9051358093310269) > 1e-3);
  });

  it('ttest_ind on the data behind those summaries: the same test from sums, df 22', () => {
    // >>> a = np.array([1, 3, 4, 6, 11, 13, 15, 19, 22, 24, 25, 26, 26]); b = np.array([2, 4, 6, 9, 11, 13, 14, 15, 18, 19, 21])
    // >>> ttest_ind(a, b)  ->  TtestResult(statistic=0.905135809331027, pvalue=0.3751996797581486, df=22.0)
    const a = ofValues([1, 3, 4, 6, 11, 13, 15, 19, 22, 24, 25, 26, 26]);
    const b = ofValues([2, 4, 6, 9, 11, 13, 14, 15, 18, 19, 21]);
    const t = welch(b, a, { equalVariance: true });
    full(tStatistic(t), 0.905135809331027);
    full(t.pValue!, 0.3751996797581486);
    assert.equal(t.df, 22);
  });

  it('ttest_ind_from_stats and ttest_ind on binary data: 30 of 150 against 45 of 200 (sample variance, n - 1)', () => {
    // >>> ttest_ind_from_stats(mean1=0.2, std1=np.sqrt(0.161073), nobs1=150, mean2=0.225, std2=np.sqrt(0.175251), nobs2=200)
    // Ttest_indResult(statistic=-0.5627187905196761, pvalue=0.5739887114209541)
    const fromStats = welch({ n: 200, mean: 0.225, variance: 0.175251 }, { n: 150, mean: 0.2, variance: 0.161073 }, { equalVariance: true });
    full(tStatistic(fromStats), -0.5627187905196761);
    full(fromStats.pValue!, 0.5739887114209541);
    // >>> ttest_ind(group1, group2)  ->  TtestResult(statistic=-0.5627179589855622, pvalue=0.573989277115258, df=348.0)
    // 0/1 values: n = 150, sum = sum of squares = 30; n = 200, 45.
    const fromData = welch(moments({ n: 200, sum: 45, sumSquares: 45 }), moments({ n: 150, sum: 30, sumSquares: 30 }), { equalVariance: true });
    full(tStatistic(fromData), -0.5627179589855622);
    full(fromData.pValue!, 0.573989277115258);
    assert.equal(fromData.df, 348);
  });

  it('chisquare (our sample-ratio check): uniform and given expected frequencies, 6 and 12 categories', () => {
    // >>> chisquare([16, 18, 16, 14, 12, 12])  ->  Power_divergenceResult(statistic=2.0, pvalue=0.84914503608460956)
    const uniform = sampleRatioMismatch([16, 18, 16, 14, 12, 12], [1, 1, 1, 1, 1, 1]);
    full(uniform.chiSquare, 2.0);
    full(uniform.pValue, 0.84914503608460956);
    // >>> chisquare([16, 18, 16, 14, 12, 12], f_exp=[16, 16, 16, 16, 16, 8])  ->  statistic=3.5, pvalue=0.62338762774958223
    // (expected frequencies are weights: SRM scales them to the users seen)
    const given = sampleRatioMismatch([16, 18, 16, 14, 12, 12], [16, 16, 16, 16, 16, 8]);
    full(given.chiSquare, 3.5);
    full(given.pValue, 0.62338762774958223);
    // >>> chisquare(obs) with obs's columns [16, 18, 16, 14, 12, 12] and [32, 24, 16, 28, 20, 24]
    // statistic=array([2.        , 6.66666667]), pvalue=array([0.84914504, 0.24663415])
    const columns = [
      [16, 18, 16, 14, 12, 12],
      [32, 24, 16, 28, 20, 24],
    ].map((c) => sampleRatioMismatch(c, [1, 1, 1, 1, 1, 1]));
    eightDecimals(
      columns.map((c) => c.chiSquare),
      [2, 6.66666667],
    );
    eightDecimals(
      columns.map((c) => c.pValue),
      [0.84914504, 0.24663415],
    );
    // >>> chisquare(obs, axis=None)  ->  statistic=23.31034482758621, pvalue=0.015975692534127565
    // >>> chisquare(obs.ravel())     ->  statistic=23.310344827586206, pvalue=0.01597569253412758 (another summation order)
    const flat = sampleRatioMismatch([16, 18, 16, 14, 12, 12, 32, 24, 16, 28, 20, 24], new Array<number>(12).fill(1));
    for (const [chiSquare, pValue] of [
      [23.31034482758621, 0.015975692534127565],
      [23.310344827586206, 0.01597569253412758],
    ] as const) {
      full(flat.chiSquare, chiSquare);
      full(flat.pValue, pValue);
    }
    // >>> chisquare([16, 18, 16, 14, 12, 12], f_exp=[[16, 16, 16, 16, 16, 8], [8, 20, 20, 16, 12, 12]], axis=1)
    // statistic=array([3.5 , 9.25]), pvalue=array([0.62338763, 0.09949846])
    const both = [
      [16, 16, 16, 16, 16, 8],
      [8, 20, 20, 16, 12, 12],
    ].map((w) => sampleRatioMismatch([16, 18, 16, 14, 12, 12], w));
    eightDecimals(
      both.map((c) => c.chiSquare),
      [3.5, 9.25],
    );
    eightDecimals(
      both.map((c) => c.pValue),
      [0.62338763, 0.09949846],
    );
  });

  it("chisquare's ddof: the same statistic 2.0 at 4 and 3 degrees of freedom (the chi-square tail itself)", () => {
    // >>> chisquare([16, 18, 16, 14, 12, 12], ddof=1)  ->  statistic=2.0, pvalue=0.7357588823428847
    full(chiSquareSf(2, 4), 0.7357588823428847);
    // >>> chisquare([16, 18, 16, 14, 12, 12], ddof=[0, 1, 2])  ->  pvalue=array([0.84914504, 0.73575888, 0.5724067 ])
    eightDecimals(
      [5, 4, 3].map((k) => chiSquareSf(2, k)),
      [0.84914504, 0.73575888, 0.5724067],
    );
  });

  it('false_discovery_control (method bh): our Benjamini-Hochberg, on the 15 p-values of Neuhaus et al. and out of order', () => {
    // >>> ps = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000]
    // >>> stats.false_discovery_control(ps)
    const ps = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.324, 0.4262, 0.5719, 0.6528, 0.759, 1.0];
    eightDecimals(
      benjaminiHochberg(ps),
      [0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.06385714, 0.06385714, 0.0645, 0.0765, 0.486, 0.58118182, 0.714875, 0.75323077, 0.81321429, 1.0],
    );
    // >>> stats.false_discovery_control([0.5, 0.6, 0.1, 0.001])  ->  array([0.6  , 0.6  , 0.2  , 0.004])
    eightDecimals(benjaminiHochberg([0.5, 0.6, 0.1, 0.001]), [0.6, 0.6, 0.2, 0.004]);
  });

  it("the distributions: scipy.special's stdtr, ndtr, ndtri and chdtrc examples", () => {
    // stdtr: ">>> stdtr(3, 1)  0.8044988905221148"; stdtridf: ">>> stdtr(5, 2)  0.9490302605850709"
    full(tCdf(1, 3), 0.8044988905221148);
    full(tCdf(2, 5), 0.9490302605850709);
    // ndtri: ">>> ndtr(2)  0.9772498680518208", ">>> ndtri(cdf_val)  2.0000000000000004"
    full(normalCdf(2), 0.9772498680518208);
    full(normalQuantile(0.9772498680518208), 2.0000000000000004);
    // chdtrc: ">>> sc.chdtrc(1, np.arange(4))  array([1.        , 0.31731051, 0.15729921, 0.08326452])"
    eightDecimals(
      [0, 1, 2, 3].map((x) => chiSquareSf(x, 1)),
      [1, 0.31731051, 0.15729921, 0.08326452],
    );
  });
});
