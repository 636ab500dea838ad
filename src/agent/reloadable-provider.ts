/**
 * The daemon's KMIP provider, replaceable while it runs (a reloaded configuration with other key servers):
 * every holder keeps the one object it was given, whose calls go to the current provider. A replaced
 * provider is closed once the calls that were already running on it have finished, so a reload never cuts
 * a request (an unlock's Get) in half.
 */
import type { KmipProvider } from '../kmip/index.js';

export class ReloadableProvider {
  private current: KmipProvider;
  private readonly running = new Map<KmipProvider, number>();
  private readonly retired = new Set<KmipProvider>();
  /** What holders use: a stand-in for the current provider. */
  readonly provider: KmipProvider;

  constructor(initial: KmipProvider) {
    this.current = initial;
    const track = (p: KmipProvider, delta: number) => {
      const n = (this.running.get(p) ?? 0) + delta;
      if (n > 0) this.running.set(p, n);
      else {
        this.running.delete(p);
        if (this.retired.delete(p)) p.close();
      }
    };
    this.provider = new Proxy(initial, {
      get: (_target, property) => {
        const target = this.current;
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== 'function' || property === 'close') return value;
        return (...args: unknown[]) => {
          track(target, +1);
          let result: unknown;
          try {
            result = (value as (...a: unknown[]) => unknown).apply(target, args);
          } catch (error) {
            track(target, -1);
            throw error;
          }
          if (result instanceof Promise) return result.finally(() => track(target, -1));
          track(target, -1);
          return result;
        };
      },
    });
  }

  /** The provider calls now go to (for health and endpoints). */
  get active(): KmipProvider {
    return this.current;
  }

  /** Sends new calls to `next`; the previous provider is closed when its running calls are done. */
  replace(next: KmipProvider): void {
    const previous = this.current;
    this.current = next;
    if (previous === next) return;
    if ((this.running.get(previous) ?? 0) === 0) previous.close();
    else this.retired.add(previous);
  }

  /** Closes the current provider and every retired one (at shutdown). */
  close(): void {
    for (const p of this.retired) p.close();
    this.retired.clear();
    this.current.close();
  }
}
