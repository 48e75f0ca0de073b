// Azurite's queue service without its garbage sweep, for benchmarks (standins/azurite.py says why).
// Node resolves these from the repository's node_modules, where `npm ci` installs the pinned Azurite.
"use strict";
const sweeper = require("azurite/dist/src/queue/gc/QueueGCManager.js").default;
// Deleted messages then stay in memory until the process ends: a benchmark's few thousand are a few MB.
sweeper.prototype.markSweep = async function () {};
require("azurite/dist/src/queue/main.js");
