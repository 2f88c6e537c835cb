// Entry point of the server: the only place that exits or traps signals.
import { ConfigError, loadConfig, type Config } from './config.js';
import { startGateway } from './gateway.js';
import { createLogger } from './logger.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  let gateway;
  try {
    gateway = await startGateway(config, logger);
  } catch (err) {
    process.stderr.write(`could not start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  logger.info({ role: config.role, url: gateway.url, embedded: gateway.db.embedded }, 'gateway started');
  if (gateway.url) process.stdout.write(`\nInfraAudit webhook gateway on ${gateway.url}\nGraphiQL: ${gateway.url}/graphql\n`);
  else process.stdout.write('\nInfraAudit webhook gateway worker started (ROLE=worker, no HTTP server)\n');
  if (gateway.developmentKey) {
    process.stdout.write(
      `\nDevelopment API key (shown once, tenant "local"):\n  ${gateway.developmentKey}\n` +
        `Try: curl -H "Authorization: Bearer ${gateway.developmentKey}" ${gateway.url ?? ''}/api/v1/webhooks\n\n`,
    );
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal; exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    gateway
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
