import { defineConfig } from "vite";

// The server serves dist/index.html at / and dist/assets/* at /assets; `npm run dev` proxies the API
// and the room WebSocket to a local `trinity serve` on port 8000.
export default defineConfig({
  base: "/",
  build: { outDir: "dist", assetsDir: "assets", chunkSizeWarningLimit: 1500 },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/healthz": "http://127.0.0.1:8000",
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
});
