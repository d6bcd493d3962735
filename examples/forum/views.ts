const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text made safe to put in HTML. */
export const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);

/** A whole page: title, the region that served it, and the content (already HTML). */
export function page(region: string, title: string, content: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Regional forum</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  header { display: flex; justify-content: space-between; align-items: baseline; }
  small { color: #666; }
  textarea { width: 100%; min-height: 4rem; }
  li { margin: 0.5rem 0; }
</style>
</head>
<body>
<header><h1>${title}</h1><small>served from <strong>${escapeHtml(region)}</strong></small></header>
${content}
</body>
</html>
`;
}
