// TypeScript looks for tether.d.mts beside tether.mjs; the declarations live in tether.d.ts.
export * from './tether.js';
