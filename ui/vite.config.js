import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The gateway serves ui/dist at /ui/ (gateway/routes/ui.py), so every asset URL is /ui/...
export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    // One bundle: react, the SDK and @langchain/core (its message classes) are ~630 kB, 176 kB gzipped.
    chunkSizeWarningLimit: 1000,
  },
  server: {
    // `npm run dev` (port 5173) talks to the gateway on 127.0.0.1:8123 unless ?apiUrl= says otherwise.
    port: 5173,
  },
});
