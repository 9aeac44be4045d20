/**
 * `GET /dashboard`: the operator's page (src/dashboard/page.ts). The page holds no data and is
 * served to anyone who can reach the server; everything it shows comes from the admin routes,
 * with the token the operator types in.
 */
import type { FastifyInstance } from 'fastify';
import { DASHBOARD_HTML } from '../../dashboard/page.js';

export function registerDashboardRoute(app: FastifyInstance): void {
  app.get('/dashboard', (_request, reply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      // Only this page's own inline code and same-origin requests.
      .header('content-security-policy', "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'")
      .header('x-frame-options', 'DENY')
      .send(DASHBOARD_HTML),
  );
}
