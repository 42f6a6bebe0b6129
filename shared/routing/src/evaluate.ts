/**
 * Evaluation of a RouteSet for one instance: start from `default`, then every rule in file order; a rule
 * that matches applies its actions in order, and `stop: true` ends the evaluation after it. The result
 * says, for every destination, which rule decided it: the explain output of `portico route --explain` and
 * of the admin endpoint, and the input of the export fan-out.
 */
import type { DicomJsonDataset, Mutation } from '@portico/dicom';
import { comparableValues, reachElements } from './attributes.ts';
import { compiledOf, type Condition, type Matcher, type RouteSet } from './model.ts';
import { DEFAULT_RULE } from './parse.ts';

/** Where an instance came from. AE titles are those of the association that brought it (DIMSE only). */
export interface RouteContext {
  readonly source: 'dimse' | 'stow-rs' | 'import';
  readonly callingAeTitle?: string;
  readonly calledAeTitle?: string;
}

/** One destination of an instance, and how it is sent there. */
export interface RouteDecision {
  readonly destination: string;
  /** the last rule that added or changed this destination; `default` when it comes from `default` untouched */
  readonly rule: string;
  /** transcode to this transfer syntax for this destination; absent: send as stored */
  readonly transferSyntaxUid?: string;
  /** attribute changes for this destination only, in the order to apply them */
  readonly mutations: readonly Mutation[];
}

export interface RouteExplanation {
  /** where the instance goes, in order of first addition */
  readonly destinations: readonly RouteDecision[];
  /** destinations it had at some point and lost, with the rule that last removed each */
  readonly removed: readonly { destination: string; rule: string }[];
  /** every rule evaluated, in file order (rules after a matching `stop: true` rule are not evaluated) */
  readonly rules: readonly { rule: string; matched: boolean }[];
}

function sameText(a: string, b: string, ignoreCase: boolean): boolean {
  return ignoreCase ? a.toLowerCase() === b.toLowerCase() : a === b;
}

/** Whether any of `values` passes the test (`present` is decided by the caller). */
function anyValueMatches(matcher: Exclude<Matcher, { kind: 'present' }>, values: readonly (string | number)[]): boolean {
  switch (matcher.kind) {
    case 'equals':
      return values.some((v) =>
        matcher.operands.some((o) => (typeof v === 'number' ? o.num !== undefined && v === o.num : sameText(v, o.text, matcher.ignoreCase))),
      );
    case 'matches':
      return values.some((v) => matcher.regex.test(String(v)));
  }
}

function contextValue(ctx: RouteContext, field: 'calledAeTitle' | 'callingAeTitle' | 'source'): string | undefined {
  const v = ctx[field];
  // AE titles: leading and trailing spaces are not significant (PS3.5 §6.2, VR AE).
  return v === undefined ? undefined : field === 'source' ? v : v.trim();
}

function holds(condition: Condition, dataset: DicomJsonDataset, ctx: RouteContext): boolean {
  switch (condition.kind) {
    case 'all':
      return condition.of.every((c) => holds(c, dataset, ctx));
    case 'any':
      return condition.of.some((c) => holds(c, dataset, ctx));
    case 'not':
      return !holds(condition.of, dataset, ctx);
    case 'context': {
      const value = contextValue(ctx, condition.field);
      const m = condition.matcher;
      if (m.kind === 'present') return (value !== undefined && value !== '') === m.present;
      return value !== undefined && value !== '' && anyValueMatches(m, [value]);
    }
    case 'attribute': {
      const elements = reachElements(dataset, condition.path);
      const m = condition.matcher;
      if (m.kind === 'present') return elements.length > 0 === m.present;
      return elements.some((e) => anyValueMatches(m, comparableValues(e)));
    }
  }
}

interface Pending {
  rule: string;
  transferSyntaxUid: string | undefined;
  mutations: Mutation[];
}

/**
 * Where an instance goes and why.
 * @param dataset the instance in the DICOM JSON Model, as Portico stores it (@see PS3.18 §F.2)
 */
export function evaluateRoutes(routes: RouteSet, dataset: DicomJsonDataset, ctx: RouteContext): RouteExplanation {
  const { defaults, rules } = compiledOf(routes);
  const current = new Map<string, Pending>(defaults.map((d) => [d, { rule: DEFAULT_RULE, transferSyntaxUid: undefined, mutations: [] }]));
  const removed = new Map<string, string>();
  const evaluated: { rule: string; matched: boolean }[] = [];
  for (const rule of rules) {
    const matched = holds(rule.when, dataset, ctx);
    evaluated.push({ rule: rule.name, matched });
    if (!matched) continue;
    for (const action of rule.then) {
      const existing = current.get(action.destination);
      if (action.kind === 'remove') {
        if (existing) {
          current.delete(action.destination);
          removed.set(action.destination, rule.name);
        }
        continue;
      }
      if (!existing && action.kind === 'change') continue;
      const target = existing ?? { rule: rule.name, transferSyntaxUid: undefined, mutations: [] };
      target.rule = rule.name;
      if (action.transferSyntaxUid !== undefined) target.transferSyntaxUid = action.transferSyntaxUid;
      target.mutations.push(...action.mutations);
      if (!existing) {
        current.set(action.destination, target);
        removed.delete(action.destination);
      }
    }
    if (rule.stop) break;
  }
  return {
    destinations: [...current].map(([destination, p]) =>
      p.transferSyntaxUid === undefined
        ? { destination, rule: p.rule, mutations: p.mutations }
        : { destination, rule: p.rule, transferSyntaxUid: p.transferSyntaxUid, mutations: p.mutations },
    ),
    removed: [...removed].map(([destination, rule]) => ({ destination, rule })),
    rules: evaluated,
  };
}

/** Every destination name the file mentions (default, add, change, remove), so callers can check they exist. */
export function routeDestinations(routes: RouteSet): string[] {
  return [...compiledOf(routes).destinations];
}
