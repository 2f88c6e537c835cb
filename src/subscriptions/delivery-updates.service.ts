// Starting a live delivery subscription: the per-request half, which checks what the viewer may
// watch before the process-wide hub takes over.
import type { TenantViewer } from '../auth/viewer.js';
import type { WebhookService } from '../modules/webhooks/webhook.service.js';
import type { DeliveryUpdateHub, DeliveryUpdateMessage, WebhookHealthMessage } from './delivery-update-hub.js';

export class DeliveryUpdatesService {
  constructor(
    private readonly webhooks: WebhookService,
    private readonly hub: DeliveryUpdateHub,
  ) {}

  /**
   * Updates of one webhook of the viewer's tenant, or of all of them when `webhookId` is null,
   * until the viewer's credentials end (the token expires, the API key is revoked). A
   * malformed, unknown or foreign webhook id is NOT_FOUND, before anything is streamed. A tenant
   * at its subscription quota is RATE_LIMITED, before the webhook is even looked up.
   */
  async subscribe(viewer: TenantViewer, webhookId: string | null): Promise<AsyncIterableIterator<DeliveryUpdateMessage>> {
    const { tenantId } = viewer;
    this.hub.checkRoom(tenantId);
    if (webhookId !== null) await this.webhooks.get(tenantId, webhookId);
    return this.hub.subscribe(tenantId, webhookId, viewer);
  }

  /**
   * Health changes (failing, disabled, recovered) of one webhook of the viewer's tenant, checked
   * and bounded as above.
   */
  async subscribeHealth(viewer: TenantViewer, webhookId: string): Promise<AsyncIterableIterator<WebhookHealthMessage>> {
    const { tenantId } = viewer;
    this.hub.checkRoom(tenantId);
    await this.webhooks.get(tenantId, webhookId);
    return this.hub.subscribeHealth(tenantId, webhookId, viewer);
  }
}
