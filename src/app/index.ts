/**
 * The simulated product (stage 1): its users, their events, and the ground truth behind them.
 */
export { simulateIntoOltp, SIMULATOR_VERSION } from './history.js';
export { Random, logit, sigmoid } from '../workbench/random.js';
export {
  AppSimulator,
  DEFAULT_SIMULATION,
  FEATURES,
  FEATURE_TRUTH,
  SimulationConfigSchema,
  simulateHistory,
  streamSimulation,
  type Feature,
  type FeatureTruth,
  type GroundTruth,
  type SimulatedDay,
  type SimulationConfig,
  type StreamOptions,
  type UserTruth,
} from './simulator.js';
export { appSource, mergeSources, retailSource, type ReplaySource, type TimedEvent } from './replay.js';
