// counter-node: the `counter` reference interface (SPEC.md §9.3), go-plugin's bidirectional
// example. `put` asks the host's `adder` handle for the new value; while that call is pending,
// other requests (another put, a get) are served as usual.
import { serve, schema as s } from './tether.mjs';

const counts = new Map(); // key -> integer

serve({
  name: 'counter-node',
  version: '0.1.0',
  interfaces: [
    {
      name: 'counter',
      versions: {
        1: {
          put: {
            params: s.object({ key: s.string(), value: s.integer(), adder: s.handle('adder') }),
            result: s.empty(),
          },
          get: { params: s.object({ key: s.string() }), result: s.object({ value: s.integer() }) },
        },
      },
      handlers: {
        // Cancelling the put cancels the pending `sum` too (the SDK sends $/cancelRequest).
        async put({ key, value, adder }) {
          const { result } = await adder.call('sum', { a: counts.get(key) ?? 0, b: value });
          if (!Number.isSafeInteger(result)) throw new Error(`the adder answered ${JSON.stringify(result)}`);
          counts.set(key, result);
        },
        get({ key }) {
          return { value: counts.get(key) ?? 0 };
        },
      },
    },
  ],
});
