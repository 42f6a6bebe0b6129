/**
 * Attribute mutations: what a route asks to change in an instance for one destination (set, remove,
 * modify). Routing (@portico/routing) produces them from routes.yml; the export transform
 * (@portico/imaging transformInstance) applies them to the bytes sent to that destination. The stored
 * instance is never changed.
 */

/**
 * Where an attribute is: tags as 8 upper-case hex digits, outermost first. Every step but the last names a
 * sequence and applies to each of its items, so `['00400275', '00321060']` is Requested Procedure
 * Description in every item of Request Attributes Sequence.
 */
export type AttributePath = readonly string[];

export type Mutation =
  /** Sets the value (creates the element, and missing sequence items are not created: the step must exist). */
  | { readonly op: 'set'; readonly path: AttributePath; readonly vr: string; readonly value: readonly (string | number)[] }
  /** Removes the element wherever the path finds it. */
  | { readonly op: 'remove'; readonly path: AttributePath }
  /** Regular-expression replacement in each string value (JavaScript syntax; `flags` as in RegExp). */
  | { readonly op: 'modify'; readonly path: AttributePath; readonly pattern: string; readonly replacement: string; readonly flags?: string };
