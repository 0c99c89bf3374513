import { defineConfig } from 'vite'

// The build lands in web/dist, which the server embeds at compile time (server/build.rs).
export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1024
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:4000',
      '/collab': { target: 'ws://127.0.0.1:4000', ws: true }
    }
  }
})
