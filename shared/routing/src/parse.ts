/**
 * routes.yml → a compiled RouteSet. The YAML is read with the failsafe schema (every scalar is text) and
 * validated by walking its nodes rather than a plain object: each problem is reported at the line and
 * column of the key or value at fault, all problems at once, and values keep the text the administrator
 * wrote (`PatientID: 012345` stays "012345", `00100010` stays a tag, never the number 100010).
 *
 * The format and its semantics are documented in docs/routing.md; keep the two in step.
 */
import { readFileSync } from 'node:fs';
import { isValidUid, type AttributePath, type Mutation } from '@portico/dicom';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import { ALL_VRS, BINARY_VRS, NUMERIC_VRS, parseAttributePath, parseTag, type PathStep } from './attributes.ts';
import { RoutesError, type RoutesIssue } from './errors.ts';
import { makeRouteSet, type Action, type Condition, type ContextField, type Matcher, type Operand, type RouteSet, type Rule } from './model.ts';
import { TRANSCODE_TARGETS, transcodeTarget } from './transfer-syntaxes.ts';

/** Rule name under which explain reports destinations that come from `default` and no rule touched. */
export const DEFAULT_RULE = 'default';

/** The values of `source` conditions, as RouteContext spells them. */
export const SOURCES = ['dimse', 'stow-rs', 'import'] as const;

const INTEGER_VRS: ReadonlySet<string> = new Set(['IS', 'SL', 'SS', 'SV', 'UL', 'US', 'UV']);
/** String VRs that hold one value in which a backslash is ordinary text. @see PS3.5 §6.4 */
const SINGLE_VALUED_TEXT: ReadonlySet<string> = new Set(['LT', 'ST', 'UT', 'UR']);
/** Destination names: AE titles (the default repertoire without backslash, PS3.5 §6.2) and other target names. */
const DESTINATION = /^[\x20-\x5b\x5d-\x7e]{1,64}$/;
const NULLS: ReadonlySet<string> = new Set(['', '~', 'null', 'Null', 'NULL']);
const TRUE: ReadonlySet<string> = new Set(['true', 'True', 'TRUE']);
const FALSE: ReadonlySet<string> = new Set(['false', 'False', 'FALSE']);

const TOP_KEYS = ['default', 'rules'];
const RULE_KEYS = ['name', 'when', 'then', 'stop'];
const ACTION_KINDS = ['add', 'change', 'remove'] as const;
const ACTION_OPTIONS = ['transcode', 'set', 'delete', 'modify'];
const MATCHER_KEYS = ['equals', 'matches', 'present', 'ignoreCase'];
const CONTEXT_FIELDS: readonly ContextField[] = ['calledAeTitle', 'callingAeTitle', 'source'];

function regexReason(err: unknown): string {
  return `bad regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`;
}

/** Walks one document, collecting issues; methods return `undefined` where they reported one. */
class Compiler {
  readonly issues: RoutesIssue[] = [];
  readonly destinations = new Set<string>();
  private readonly doc: Document;
  private readonly lines: LineCounter;

  constructor(doc: Document, lines: LineCounter) {
    this.doc = doc;
    this.lines = lines;
  }

  fail(node: Node | null | undefined, reason: string): undefined {
    // Only an empty document has no node to point at; its problem is at the start of the file.
    const { line, col } = this.lines.linePos(node?.range?.[0] ?? 0);
    this.issues.push({ line, column: col, reason });
    return undefined;
  }

  /** The node an alias stands for, so `*anchor` works anywhere its target would. */
  resolve(node: unknown): Node | null {
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return (node as Node | null) ?? null;
  }

  isNull(node: Node | null): boolean {
    return node === null || (isScalar(node) && node.type === 'PLAIN' && NULLS.has(String(node.value)));
  }

  text(node: Node | null, what: string, parent?: Node): string | undefined {
    if (isScalar(node)) return String(node.value);
    return this.fail(node ?? parent, `${what} must be a text value`);
  }

  boolean(node: Node | null, what: string, parent?: Node): boolean | undefined {
    if (isScalar(node)) {
      const v = String(node.value);
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
    }
    return this.fail(node ?? parent, `${what} must be true or false`);
  }

  /** The entries of a map with text keys; unknown keys (when `known` is given) are reported and skipped. */
  entries(map: YAMLMap, known?: readonly string[], where = 'here'): { key: string; keyNode: Node; value: Node | null }[] {
    const out: { key: string; keyNode: Node; value: Node | null }[] = [];
    for (const pair of map.items as Pair<unknown, unknown>[]) {
      const keyNode = this.resolve(pair.key);
      if (!isScalar(keyNode)) {
        this.fail(keyNode ?? map, 'keys must be plain text');
        continue;
      }
      const key = String(keyNode.value);
      if (known && !known.includes(key)) {
        this.fail(keyNode, `unknown key "${key}" ${where} (expected one of: ${known.join(', ')})`);
        continue;
      }
      out.push({ key, keyNode, value: this.resolve(pair.value) });
    }
    return out;
  }

  /** A node that may be one item or a list of them, as a list (null: empty). */
  list(node: Node | null): Node[] {
    if (this.isNull(node)) return [];
    if (isSeq(node)) return node.items.map((i) => this.resolve(i)).filter((i): i is Node => i !== null);
    return node ? [node] : [];
  }

  destination(node: Node | null, parent: Node): string | undefined {
    const name = this.text(node, 'a destination', parent);
    if (name === undefined) return undefined;
    if (!DESTINATION.test(name) || name.trim() !== name) {
      return this.fail(
        node,
        `"${name}" is not a destination name (1-64 characters, letters, digits, spaces inside and the printable ASCII of AE titles, no backslash)`,
      );
    }
    this.destinations.add(name);
    return name;
  }

  routes(root: Node | null): { defaults: string[]; rules: Rule[] } | undefined {
    if (this.isNull(root)) {
      return this.fail(root, 'the routes file is empty; write `default: []` and no rules to route nothing');
    }
    if (!isMap(root)) return this.fail(root, 'the routes file must be a map with `default` and `rules`');
    let defaults: string[] = [];
    let rules: Rule[] = [];
    for (const { key, keyNode, value } of this.entries(root, TOP_KEYS, 'at the top level')) {
      if (key === 'default') defaults = this.defaults(value, keyNode);
      else rules = this.rules(value, keyNode);
    }
    return { defaults, rules };
  }

  defaults(node: Node | null, keyNode: Node): string[] {
    if (isMap(node)) {
      this.fail(node, '`default` is a list of destinations');
      return [];
    }
    const out: string[] = [];
    for (const item of this.list(node)) {
      const d = this.destination(item, keyNode);
      if (d === undefined) continue;
      if (out.includes(d)) this.fail(item, `destination ${d} is listed twice in default`);
      else out.push(d);
    }
    return out;
  }

  rules(node: Node | null, keyNode: Node): Rule[] {
    if (this.isNull(node)) return [];
    if (!isSeq(node)) {
      this.fail(node ?? keyNode, '`rules` is a list of rules, each starting with `- name:`');
      return [];
    }
    const names = new Map<string, Node>();
    const out: Rule[] = [];
    for (const item of node.items) {
      const rule = this.rule(this.resolve(item), names);
      if (rule) out.push(rule);
    }
    return out;
  }

  rule(node: Node | null, names: Map<string, Node>): Rule | undefined {
    if (!isMap(node)) return this.fail(node, 'a rule must be a map with name, when, then and stop');
    let name: string | undefined;
    let when: Condition | undefined = { kind: 'all', of: [] };
    let then: Action[] | undefined = [];
    let stop: boolean | undefined = false;
    let hasName = false;
    let hasThen = false;
    for (const { key, keyNode, value } of this.entries(node, RULE_KEYS, 'in a rule')) {
      switch (key) {
        case 'name':
          hasName = true;
          name = this.ruleName(value, keyNode, names);
          break;
        case 'when':
          when = this.isNull(value) ? when : this.conditionMap(value, keyNode, '`when`');
          break;
        case 'then':
          hasThen = true;
          then = this.actions(value, keyNode);
          break;
        case 'stop':
          stop = this.boolean(value, '`stop`', keyNode);
          break;
      }
    }
    if (!hasName) return this.fail(node, 'a rule needs a `name`');
    if (!hasThen && stop !== true) this.fail(node, `rule ${name ?? ''} needs \`then\` (or \`stop: true\` to end routing when it matches)`);
    if (name === undefined || when === undefined || then === undefined || stop === undefined) return undefined;
    return { name, when, then, stop };
  }

  ruleName(node: Node | null, keyNode: Node, names: Map<string, Node>): string | undefined {
    const name = this.text(node, 'a rule name', keyNode);
    if (name === undefined) return undefined;
    if (name.trim() === '' || name.length > 64 || /\p{Cc}/u.test(name)) {
      return this.fail(node, 'a rule name is 1-64 characters without control characters');
    }
    if (name === DEFAULT_RULE) return this.fail(node, `"${DEFAULT_RULE}" is reserved: explain uses it for destinations that come from \`default\``);
    const first = names.get(name);
    if (first) {
      const { line } = this.lines.linePos(first.range?.[0] ?? 0);
      return this.fail(node, `rule name "${name}" is already used on line ${line}`);
    }
    if (node) names.set(name, node);
    return name;
  }

  // ---- conditions ----

  /** A map of conditions, all of which must hold. */
  conditionMap(node: Node | null, parent: Node, what: string): Condition | undefined {
    if (!isMap(node)) return this.fail(node ?? parent, `${what} takes a map of conditions`);
    const of: Condition[] = [];
    let ok = true;
    for (const { key, keyNode, value } of this.entries(node)) {
      const c = this.condition(key, keyNode, value);
      if (c) of.push(c);
      else ok = false;
    }
    if (!ok) return undefined;
    return of.length === 1 ? of[0] : { kind: 'all', of };
  }

  condition(key: string, keyNode: Node, value: Node | null): Condition | undefined {
    if (key === 'all' || key === 'any') {
      if (!isSeq(value) || value.items.length === 0) return this.fail(value ?? keyNode, `\`${key}\` takes a non-empty list of condition maps`);
      const of: Condition[] = [];
      let ok = true;
      for (const item of value.items) {
        const c = this.conditionMap(this.resolve(item), value, `each item of \`${key}\``);
        if (c) of.push(c);
        else ok = false;
      }
      return ok ? { kind: key, of } : undefined;
    }
    if (key === 'not') {
      const of = this.conditionMap(value, keyNode, '`not`');
      return of && { kind: 'not', of };
    }
    if ((CONTEXT_FIELDS as readonly string[]).includes(key)) {
      const field = key as ContextField;
      const matcher = this.matcher(value, keyNode, key, undefined);
      if (!matcher) return undefined;
      if (matcher.kind === 'equals' && field !== 'source' && matcher.operands.some((o) => o.text === '')) {
        return this.fail(value, `an empty ${field} is no AE title: write {present: false} for instances that came without one`);
      }
      if (field === 'source') {
        if (matcher.kind !== 'equals') return this.fail(value, `\`source\` is one of ${SOURCES.join(', ')} (or a list of them)`);
        for (const o of matcher.operands) {
          if (!(SOURCES as readonly string[]).includes(o.text)) return this.fail(value, `unknown source "${o.text}" (expected ${SOURCES.join(', ')})`);
        }
      }
      return { kind: 'context', field, matcher };
    }
    if (/^[a-z]/.test(key) && parseTag(key.split('.')[0]!) === undefined) {
      return this.fail(
        keyNode,
        `unknown condition "${key}" (expected all, any, not, ${CONTEXT_FIELDS.join(', ')}, or an attribute keyword such as SOPClassUID or tag (gggg,eeee))`,
      );
    }
    const steps = parseAttributePath(key);
    if (typeof steps === 'string') return this.fail(keyNode, steps);
    const last = steps[steps.length - 1]!;
    const matcher = this.matcher(value, keyNode, key, last);
    return matcher && { kind: 'attribute', path: steps.map((s) => s.tag), matcher };
  }

  /** `value`, `[values]`, `{equals}`, `{matches}` or `{present}`; `step` is the attribute, if any. */
  matcher(node: Node | null, keyNode: Node, what: string, step: PathStep | undefined): Matcher | undefined {
    const vr = step?.vr;
    const valueTests = vr === undefined || (vr !== 'SQ' && !BINARY_VRS.has(vr));
    const noValues = (at: Node | null): undefined =>
      this.fail(at ?? keyNode, `${what} is ${vr === 'SQ' ? 'a sequence' : `binary (VR ${vr})`}: only \`present: true|false\` can test it`);
    if (!isMap(node)) {
      if (!valueTests) return noValues(node);
      const operands = this.operands(node, keyNode, what, vr);
      return operands && { kind: 'equals', operands, ignoreCase: false };
    }
    const before = this.issues.length;
    const fields = this.entries(node, MATCHER_KEYS, `in the test of ${what}`);
    if (this.issues.length > before) return undefined; // an unknown key says enough
    const tests = fields.filter((f) => f.key !== 'ignoreCase');
    if (tests.length !== 1) return this.fail(node, `the test of ${what} needs exactly one of equals, matches, present`);
    const test = tests[0]!;
    const ignoreField = fields.find((f) => f.key === 'ignoreCase');
    const ignoreCase = ignoreField ? this.boolean(ignoreField.value, '`ignoreCase`', ignoreField.keyNode) : false;
    if (ignoreCase === undefined) return undefined;
    if (test.key === 'present') {
      if (ignoreField) return this.fail(ignoreField.keyNode, '`ignoreCase` goes with equals or matches, not present');
      const present = this.boolean(test.value, '`present`', test.keyNode);
      return present === undefined ? undefined : { kind: 'present', present };
    }
    if (!valueTests) return noValues(test.keyNode);
    if (test.key === 'equals') {
      const operands = this.operands(test.value, test.keyNode, what, vr);
      return operands && { kind: 'equals', operands, ignoreCase };
    }
    const source = this.text(test.value, '`matches`', test.keyNode);
    if (source === undefined) return undefined;
    try {
      return { kind: 'matches', regex: new RegExp(source, ignoreCase ? 'i' : '') };
    } catch (err) {
      return this.fail(test.value, regexReason(err));
    }
  }

  operands(node: Node | null, keyNode: Node, what: string, vr: string | undefined): Operand[] | undefined {
    if (isMap(node)) return this.fail(node, `the values of ${what} must be text or a list of text`);
    const items = isSeq(node) ? this.list(node) : [node];
    if (items.length === 0) return this.fail(node ?? keyNode, `${what}: an empty list matches nothing; list at least one value`);
    const out: Operand[] = [];
    for (const item of items) {
      if (item === null || this.isNull(item)) {
        return this.fail(keyNode, `${what}: write '' for an empty value, or {present: false} for an absent attribute`);
      }
      const raw = this.text(item, `a value of ${what}`);
      if (raw === undefined) return undefined;
      // AE titles: leading and trailing spaces are not significant (PS3.5 §6.2, VR AE).
      let text = what === 'calledAeTitle' || what === 'callingAeTitle' ? raw.trim() : raw;
      if (vr === 'AT') {
        // DICOM JSON writes AT values as 8 hex digits (PS3.18 §F.2.3), whichever way the file writes the tag.
        const tag = parseTag(text);
        if (tag === undefined) return this.fail(item, `${what} has VR AT: "${text}" is not a tag written (gggg,eeee) or ggggeeee`);
        text = tag;
      }
      const num = text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : undefined;
      if (vr !== undefined && NUMERIC_VRS.has(vr) && num === undefined) {
        return this.fail(item, `${what} has VR ${vr} and compares as a number: "${text}" is not one`);
      }
      out.push({ text, num });
    }
    return out;
  }

  // ---- actions ----

  actions(node: Node | null, keyNode: Node): Action[] | undefined {
    if (this.isNull(node)) return [];
    const items = isSeq(node) ? node.items.map((i) => this.resolve(i)) : [node];
    const out: Action[] = [];
    let ok = true;
    for (const item of items) {
      const a = this.action(item, keyNode);
      if (a) out.push(a);
      else ok = false;
    }
    return ok ? out : undefined;
  }

  action(node: Node | null, parent: Node): Action | undefined {
    if (!isMap(node)) return this.fail(node ?? parent, 'an action is a map: {add: DEST}, {change: DEST} or {remove: DEST}');
    const before = this.issues.length;
    const fields = this.entries(node, [...ACTION_KINDS, ...ACTION_OPTIONS], 'in an action');
    if (this.issues.length > before) return undefined;
    const kinds = fields.filter((f) => (ACTION_KINDS as readonly string[]).includes(f.key));
    if (kinds.length === 0) return this.fail(node, 'an action needs add, change or remove (the destination it is about)');
    if (kinds.length > 1)
      return this.fail(kinds[1]!.keyNode, `an action has one of add, change, remove; this one has ${kinds.map((k) => k.key).join(' and ')}`);
    const kind = kinds[0]!;
    const destination = this.destination(kind.value, kind.keyNode);
    const options = fields.filter((f) => ACTION_OPTIONS.includes(f.key));
    if (kind.key === 'remove') {
      for (const o of options) this.fail(o.keyNode, `\`${o.key}\` applies to add or change, not to remove (a removed destination receives nothing)`);
      return destination === undefined || options.length > 0 ? undefined : { kind: 'remove', destination };
    }
    let transferSyntaxUid: string | undefined;
    const mutations: Mutation[] = [];
    let ok = destination !== undefined;
    for (const { key, keyNode, value } of options) {
      if (key === 'transcode') {
        const name = this.text(value, '`transcode`', keyNode);
        transferSyntaxUid = name === undefined ? undefined : transcodeTarget(name);
        if (name !== undefined && transferSyntaxUid === undefined) {
          this.fail(value, `unknown transfer syntax "${name}" (expected one of ${[...TRANSCODE_TARGETS.keys()].join(', ')}, or one of their UIDs)`);
        }
        ok &&= transferSyntaxUid !== undefined;
      } else {
        const m = key === 'set' ? this.sets(value, keyNode) : key === 'delete' ? this.deletes(value, keyNode) : this.modifies(value, keyNode);
        if (m) mutations.push(...m);
        else ok = false;
      }
    }
    if (!ok || destination === undefined) return undefined;
    return { kind: kind.key as 'add' | 'change', destination, transferSyntaxUid, mutations };
  }

  /** An attribute key of a mutation; `undefined` (reported) when it is not usable. */
  mutationPath(key: string, keyNode: Node): PathStep[] | undefined {
    const steps = parseAttributePath(key);
    if (typeof steps === 'string') return this.fail(keyNode, steps);
    return steps;
  }

  sets(node: Node | null, keyNode: Node): Mutation[] | undefined {
    if (!isMap(node)) return this.fail(node ?? keyNode, '`set` takes a map of attribute: value');
    const out: Mutation[] = [];
    let ok = true;
    for (const e of this.entries(node)) {
      const m = this.set(e.key, e.keyNode, e.value);
      if (m) out.push(m);
      else ok = false;
    }
    return ok ? out : undefined;
  }

  set(key: string, keyNode: Node, node: Node | null): Mutation | undefined {
    const steps = this.mutationPath(key, keyNode);
    if (!steps) return undefined;
    const path: AttributePath = steps.map((s) => s.tag);
    let vr = steps[steps.length - 1]!.vr;
    let valueNode = node;
    if (isMap(node)) {
      const before = this.issues.length;
      const fields = this.entries(node, ['vr', 'value'], `in the value of ${key}`);
      if (this.issues.length > before) return undefined;
      const vrField = fields.find((f) => f.key === 'vr');
      const valueField = fields.find((f) => f.key === 'value');
      if (!valueField) return this.fail(node, `${key}: {vr, value} needs a value`);
      valueNode = valueField.value;
      if (vrField) {
        const v = this.text(vrField.value, '`vr`', vrField.keyNode);
        if (v === undefined) return undefined;
        if (!ALL_VRS.has(v)) return this.fail(vrField.value, `"${v}" is not a VR of PS3.5 Table 6.2-1`);
        vr = v;
      }
    }
    if (vr === undefined) {
      return this.fail(keyNode, `${key} is private or unknown to the dictionary: write {vr: XX, value: ...} to give its VR`);
    }
    if (vr === 'SQ') return this.fail(keyNode, `${key} is a sequence: set can only give values to attributes inside its items (${key}.Keyword)`);
    if (BINARY_VRS.has(vr)) return this.fail(keyNode, `${key} has binary VR ${vr}, which routes cannot set`);
    const value: (string | number)[] = [];
    const items = this.isNull(valueNode) ? [] : isSeq(valueNode) ? this.list(valueNode) : [valueNode];
    for (const item of items) {
      const v = this.setValue(item, vr, key);
      if (v === undefined) return undefined;
      if (v !== '' || items.length > 1) value.push(v);
    }
    return { op: 'set', path, vr, value };
  }

  setValue(node: Node | null, vr: string, key: string): string | number | undefined {
    const text = this.text(node, `a value of ${key}`);
    if (text === undefined) return undefined;
    if (NUMERIC_VRS.has(vr)) {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) return this.fail(node, `${key} has VR ${vr}: "${text}" is not a number`);
      if (INTEGER_VRS.has(vr) && !Number.isInteger(n)) return this.fail(node, `${key} has VR ${vr}: "${text}" is not an integer`);
      return n;
    }
    if (vr === 'UI' && text !== '' && !isValidUid(text)) return this.fail(node, `${key}: "${text}" is not a UID (digits and dots, at most 64 characters)`);
    if (vr === 'AT') {
      const tag = parseTag(text);
      return tag ?? this.fail(node, `${key} has VR AT: "${text}" is not a tag written (gggg,eeee) or ggggeeee`);
    }
    if (!SINGLE_VALUED_TEXT.has(vr) && text.includes('\\')) {
      return this.fail(node, `${key}: a backslash separates values in DICOM; write a list instead`);
    }
    return text;
  }

  deletes(node: Node | null, keyNode: Node): Mutation[] | undefined {
    if (isMap(node)) return this.fail(node, '`delete` takes an attribute or a list of attributes');
    const items = this.list(node);
    if (items.length === 0) return this.fail(node ?? keyNode, '`delete` needs at least one attribute');
    const out: Mutation[] = [];
    let ok = true;
    for (const item of items) {
      const key = this.text(item, 'an attribute');
      const steps = key === undefined ? undefined : this.mutationPath(key, item);
      if (steps) out.push({ op: 'remove', path: steps.map((s) => s.tag) });
      else ok = false;
    }
    return ok ? out : undefined;
  }

  modifies(node: Node | null, keyNode: Node): Mutation[] | undefined {
    if (!isMap(node)) return this.fail(node ?? keyNode, '`modify` takes a map of attribute: {pattern, replacement, flags}');
    const out: Mutation[] = [];
    let ok = true;
    for (const e of this.entries(node)) {
      const m = this.modify(e.key, e.keyNode, e.value);
      if (m) out.push(m);
      else ok = false;
    }
    return ok ? out : undefined;
  }

  modify(key: string, keyNode: Node, node: Node | null): Mutation | undefined {
    const steps = this.mutationPath(key, keyNode);
    if (!steps) return undefined;
    const vr = steps[steps.length - 1]!.vr;
    if (vr !== undefined && (vr === 'SQ' || BINARY_VRS.has(vr) || NUMERIC_VRS.has(vr) || vr === 'AT')) {
      return this.fail(keyNode, `${key} has VR ${vr}: modify rewrites text values only`);
    }
    if (!isMap(node)) return this.fail(node ?? keyNode, `${key}: modify takes {pattern, replacement, flags}`);
    const before = this.issues.length;
    const fields = this.entries(node, ['pattern', 'replacement', 'flags'], `in the modify of ${key}`);
    if (this.issues.length > before) return undefined;
    const get = (k: string): { value: Node | null; keyNode: Node } | undefined => fields.find((f) => f.key === k);
    const patternField = get('pattern');
    const replacementField = get('replacement');
    if (!patternField || !replacementField) return this.fail(node, `${key}: modify needs both pattern and replacement`);
    const pattern = this.text(patternField.value, '`pattern`', patternField.keyNode);
    const replacement = this.isNull(replacementField.value) ? '' : this.text(replacementField.value, '`replacement`', replacementField.keyNode);
    const flagsField = get('flags');
    const flags = flagsField ? this.text(flagsField.value, '`flags`', flagsField.keyNode) : undefined;
    if (pattern === undefined || replacement === undefined || (flagsField && flags === undefined)) return undefined;
    try {
      new RegExp(pattern, flags);
    } catch (err) {
      return this.fail(flagsField && /flag/i.test((err as Error).message) ? flagsField.value : patternField.value, regexReason(err));
    }
    const path: AttributePath = steps.map((s) => s.tag);
    return flags === undefined ? { op: 'modify', path, pattern, replacement } : { op: 'modify', path, pattern, replacement, flags };
  }
}

/**
 * Parses and validates the text of a routes file.
 * @param source the file name (or a label) used in messages
 * @throws RoutesError listing every problem, each at its line and column
 */
export function parseRoutes(text: string, source = 'routes.yml'): RouteSet {
  const lines = new LineCounter();
  const doc = parseDocument(text, { schema: 'failsafe', lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new RoutesError(
      source,
      doc.errors.map((e) => {
        const { line, col } = lines.linePos(e.pos[0]);
        // yaml's messages end with " at line L, column C:" and a snippet; the position is given separately.
        const reason =
          e.code === 'MULTIPLE_DOCS'
            ? 'a routes file is one YAML document; this one has a second (after `---`)'
            : `not valid YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
        return { line, column: col, reason };
      }),
    );
  }
  const compiler = new Compiler(doc, lines);
  const routes = compiler.routes(compiler.resolve(doc.contents));
  if (compiler.issues.length > 0 || !routes) {
    const issues = [...compiler.issues].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    throw new RoutesError(source, issues);
  }
  return makeRouteSet(source, { ...routes, destinations: [...compiler.destinations] });
}

/**
 * Reads and parses a routes file.
 * @throws RoutesError when it cannot be read (no line) or is invalid
 */
export function loadRoutes(file: string): RouteSet {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RoutesError(file, [{ reason: `cannot read the routes file: ${(err as Error).message}` }]);
  }
  return parseRoutes(text, file);
}
