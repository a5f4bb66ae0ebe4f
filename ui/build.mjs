// Copies the static files next to the compiled scripts: ui/dist is what Tauri embeds.
import { copyFileSync, mkdirSync } from "node:fs";
mkdirSync("dist", { recursive: true });
for (const f of ["index.html", "styles.css"]) copyFileSync(f, `dist/${f}`);
