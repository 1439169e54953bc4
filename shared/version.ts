/** The release both programs report (`--version`); the bundles inline it at build time. */
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
