/**
 * Text in and out of the bench scripts: tables they print, lines they read
 * from child processes.
 *
 * @module
 */

/**
 * Prints rows as a Markdown table: the first row is the header, the first
 * column is aligned left and the others, numbers, right.
 *
 * @param rows The header row, then one row per line.
 */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) =>
    Math.max(...rows.map((row) => row[i]!.length))
  );
  const line = (row: string[]) =>
    `| ${
      row.map((cell, i) =>
        i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)
      ).join(" | ")
    } |`;
  console.log(line(rows[0]!));
  console.log(`| ${widths.map((width) => "-".repeat(width)).join(" | ")} |`);
  for (const row of rows.slice(1)) console.log(line(row));
}

/**
 * Splits a stream of bytes into lines of text, the last one even without a
 * newline.
 *
 * @param stream A child process's stdout, say.
 */
export async function* lines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    rest += text;
    let end;
    while ((end = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, end);
      rest = rest.slice(end + 1);
    }
  }
  if (rest !== "") yield rest;
}
