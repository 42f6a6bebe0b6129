/** One problem found in a routes file, at the line and column of the offending key or value. */
export interface RoutesIssue {
  readonly line?: number;
  readonly column?: number;
  readonly reason: string;
}

function where(source: string, issue: RoutesIssue): string {
  return issue.line === undefined ? source : `${source}:${issue.line}:${issue.column ?? 1}`;
}

/**
 * A routes file that cannot be used. Every problem of the file is reported at once: `issues` lists them in
 * file order, the message has one `${source}:${line}:${column}: reason` line per issue, and `line` /
 * `column` are those of the first.
 */
export class RoutesError extends Error {
  readonly source: string;
  readonly line?: number;
  readonly column?: number;
  readonly issues: readonly RoutesIssue[];

  constructor(source: string, issues: readonly RoutesIssue[]) {
    super(issues.map((i) => `${where(source, i)}: ${i.reason}`).join('\n'));
    this.name = 'RoutesError';
    this.source = source;
    this.issues = issues;
    const first = issues[0];
    if (first?.line !== undefined) {
      this.line = first.line;
      this.column = first.column;
    }
  }
}
