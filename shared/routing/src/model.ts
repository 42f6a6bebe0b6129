/**
 * The compiled form of a routes file. Callers hold it as the opaque `RouteSet`; the rules themselves stay
 * in a module-private WeakMap so nothing outside this package depends on their shape.
 */
import type { AttributePath, Mutation } from '@portico/dicom';

/** One value a condition compares with: its text as written, and that text as a number when it is one. */
export interface Operand {
  readonly text: string;
  readonly num: number | undefined;
}

export type Matcher =
  | { readonly kind: 'equals'; readonly operands: readonly Operand[]; readonly ignoreCase: boolean }
  | { readonly kind: 'matches'; readonly regex: RegExp }
  | { readonly kind: 'present'; readonly present: boolean };

export type ContextField = 'calledAeTitle' | 'callingAeTitle' | 'source';

export type Condition =
  | { readonly kind: 'all' | 'any'; readonly of: readonly Condition[] }
  | { readonly kind: 'not'; readonly of: Condition }
  | { readonly kind: 'context'; readonly field: ContextField; readonly matcher: Matcher }
  | { readonly kind: 'attribute'; readonly path: AttributePath; readonly matcher: Matcher };

export type Action =
  | {
      /** add: make it a destination (or update it); change: update it only when it already is one */
      readonly kind: 'add' | 'change';
      readonly destination: string;
      readonly transferSyntaxUid: string | undefined;
      readonly mutations: readonly Mutation[];
    }
  | { readonly kind: 'remove'; readonly destination: string };

export interface Rule {
  readonly name: string;
  readonly when: Condition;
  readonly then: readonly Action[];
  readonly stop: boolean;
}

export interface CompiledRoutes {
  readonly defaults: readonly string[];
  readonly rules: readonly Rule[];
  /** every destination the file names, in order of first mention */
  readonly destinations: readonly string[];
}

/**
 * A validated routes file, ready for `evaluateRoutes`. Only `parseRoutes` / `loadRoutes` make one; it is
 * immutable, so a hot reload swaps whole sets and an evaluation never sees half of each.
 */
export interface RouteSet {
  /** the file (or label) the rules came from, as given to `parseRoutes` */
  readonly source: string;
  /** rule names in file order */
  readonly ruleNames: readonly string[];
}

const compiled = new WeakMap<RouteSet, CompiledRoutes>();

export function makeRouteSet(source: string, routes: CompiledRoutes): RouteSet {
  const set: RouteSet = Object.freeze({ source, ruleNames: Object.freeze(routes.rules.map((r) => r.name)) });
  compiled.set(set, routes);
  return set;
}

export function compiledOf(set: RouteSet): CompiledRoutes {
  const routes = compiled.get(set);
  if (!routes) throw new TypeError('not a RouteSet made by parseRoutes or loadRoutes');
  return routes;
}
