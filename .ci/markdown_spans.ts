/**
 * Fails if an inline code span in README.md is broken across lines, which
 * `deno fmt` does when it rewraps a paragraph: the span then shows its
 * line break, and a command in it cannot be copied as it is.
 *
 * Run from the project's root: `deno run --allow-read .ci/markdown_spans.ts`.
 */
const lines = (await Deno.readTextFile("README.md")).split("\n");
const broken: string[] = [];
let fenced = false;
lines.forEach((line, i) => {
  if (line.startsWith("```")) {
    fenced = !fenced;
    return;
  }
  if (!fenced && (line.match(/`/g)?.length ?? 0) % 2 === 1) {
    broken.push(`README.md:${i + 1}: ${line}`);
  }
});
if (broken.length > 0) {
  console.error(broken.join("\n"));
  console.error("An inline code span is broken across lines: reword it");
  Deno.exit(1);
}
console.log("No inline code span broken across lines");
