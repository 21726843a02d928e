/** Names a value's type for an error message: `null`, `string`, `Array`... */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return (value as { constructor?: { name?: string } }).constructor?.name ??
    "object";
}
