# ce-broker image: `docker build -t ce-broker .`, run by docker-compose.yml.

# Build: compile the TypeScript with the dev dependencies (tsc).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY plugins ./plugins
# the dashboard's sources and the script that bundles them (esbuild) into dist/dashboard/
COPY dashboard ./dashboard
COPY scripts ./scripts
# tsconfig.build.json also lists benchmarks/, which the image does not need; tsc skips a missing folder.
RUN npm run build

# Runtime: production dependencies, the compiled code and the bundled schemas, run as `node`.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# No --ignore-scripts: the only install script is msgpackr-extract's (optional, prebuilt
# binaries); the root package has no install-time scripts (prepack/prestart do not run here).
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/plugins ./dist/plugins
COPY --from=build /app/dist/dashboard ./dist/dashboard
# ./schemas (schemas.dir's default) is read at start-up
COPY schemas ./schemas
# the package's bin: without src/ and tsx here it runs dist/
COPY bin ./bin
# The files stay root's: the broker only reads them (audit.file, if set, needs a writable volume).
# ./data (schemas.dataDir's default) is the one folder it writes embedded: the registered schema versions.
RUN mkdir -p /app/data && chown node:node /app/data
VOLUME ["/app/data"]
USER node
EXPOSE 1883 8080
# No curl in the slim image: node's fetch. /readyz is 503 while Redis is unreachable.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CE_BROKER_HTTP_PORT || 8080) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/ce-broker.js"]
CMD ["--host", "0.0.0.0"]
