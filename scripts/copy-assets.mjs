// tsc emits only JavaScript; the Lua scripts that sit beside their owners in src/ are copied next to the build.
import { cpSync } from 'node:fs';

cpSync('src', 'dist/src', {
  recursive: true,
  filter: (source) => !source.includes('.') || source.endsWith('.lua'),
});
