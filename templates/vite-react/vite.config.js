import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// base './': the gateway mounts the workspace under /<name>/, so asset URLs stay relative.
export default defineConfig({
  base: './',
  plugins: [react()],
});
