/**
 * Fails if a module imports another folder's private `_*.ts` file.
 *
 * A `_*.ts` file is private to its folder and the folders below it (the
 * root's `_bytes.ts` serves the whole package). Tests mirror the tree:
 * `tests/<folder>/` may import `<folder>/_*.ts`, the unit under test.
 *
 * Run from the project's root: `deno run --allow-read .ci/private_imports.ts`.
 */
import { dirname, join, normalize, relative } from "node:path";

const SKIP = new Set([".git", "node_modules", ".bench"]);

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    if (SKIP.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* sources(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

/** The folders whose private files `file` may import. */
function allowedFolders(file: string): string[] {
  const folders: string[] = [];
  for (let dir = dirname(file);; dir = dirname(dir)) {
    folders.push(dir);
    if (dir === "." || dir === dirname(dir)) break;
  }
  const [top, ...rest] = dirname(file).split("/");
  if (top === "tests" && rest.length > 0) folders.push(rest.join("/"));
  return folders;
}

const IMPORT = /(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g;
const problems: string[] = [];
for await (const path of sources(".")) {
  const file = normalize(relative(".", path));
  const text = await Deno.readTextFile(path);
  for (const match of text.matchAll(IMPORT)) {
    const target = normalize(join(dirname(file), match[1]!));
    const name = target.split("/").at(-1)!;
    if (!name.startsWith("_")) continue;
    const folder = dirname(target);
    if (!allowedFolders(file).includes(folder)) {
      problems.push(`${file} imports ${target}, private to ${folder}/`);
    }
  }
}
if (problems.length > 0) {
  console.error(problems.join("\n"));
  console.error(
    `${problems.length} import(s) of another folder's private file`,
  );
  Deno.exit(1);
}
console.log("No import of another folder's private file");
