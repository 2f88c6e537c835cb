import { Migration20261128000000_initial } from '../../migrations/Migration20261128000000_initial.js';
import { Migration20261128000100_rate_limit } from '../../migrations/Migration20261128000100_rate_limit.js';
import { Migration20261128000200_leased_index } from '../../migrations/Migration20261128000200_leased_index.js';
import { Migration20261204160000_previous_secrets } from '../../migrations/Migration20261204160000_previous_secrets.js';
import { Migration20261204163000_resend } from '../../migrations/Migration20261204163000_resend.js';
import { Migration20261204170000_webhook_disabled } from '../../migrations/Migration20261204170000_webhook_disabled.js';
import { Migration20261204171000_disabled_reason_values } from '../../migrations/Migration20261204171000_disabled_reason_values.js';
import { Migration20261204180000_recovery } from '../../migrations/Migration20261204180000_recovery.js';
import { Migration20261204181000_webhook_failing_since } from '../../migrations/Migration20261204181000_webhook_failing_since.js';

// Listed explicitly rather than discovered from disk, so the compiled build and the TypeScript
// sources run the same migrations without path guessing.
export const migrationsList = [
  { name: 'Migration20261128000000_initial', class: Migration20261128000000_initial },
  { name: 'Migration20261128000100_rate_limit', class: Migration20261128000100_rate_limit },
  { name: 'Migration20261128000200_leased_index', class: Migration20261128000200_leased_index },
  { name: 'Migration20261204160000_previous_secrets', class: Migration20261204160000_previous_secrets },
  { name: 'Migration20261204163000_resend', class: Migration20261204163000_resend },
  { name: 'Migration20261204170000_webhook_disabled', class: Migration20261204170000_webhook_disabled },
  { name: 'Migration20261204171000_disabled_reason_values', class: Migration20261204171000_disabled_reason_values },
  { name: 'Migration20261204180000_recovery', class: Migration20261204180000_recovery },
  { name: 'Migration20261204181000_webhook_failing_since', class: Migration20261204181000_webhook_failing_since },
];
