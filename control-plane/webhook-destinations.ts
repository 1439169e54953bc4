/**
 * Where webhooks may go. A subscription is an admin's URL, but the control plane posts to it
 * from inside its own network: without a check, a webhook could reach the embedded store, the
 * control plane itself, a cloud metadata service (169.254.169.254) or anything else on a private
 * network, and its delivery log would serve as a port scanner. So loopback, link-local, private
 * and other non-public addresses are refused — after DNS resolution, and again at connection
 * time, so a name that resolves elsewhere later (DNS rebinding) is caught too — unless the
 * operator's allowlist (NFSHA_WEBHOOK_ALLOW) names them.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { AddressSet, unmapped } from './limits.ts';

const NON_PUBLIC = new AddressSet([
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/4',
  '240.0.0.0/4',
  '::/128',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
]);

export class WebhookDestinations {
  constructor(private readonly allow: AddressSet) {}

  /** Why an address may not be posted to, or null. */
  refusal(address: string): string | null {
    const plain = unmapped(address);
    if (this.allow.has(plain) || !NON_PUBLIC.has(plain)) return null;
    return `${plain} is a loopback, link-local or private address; webhooks go to public addresses unless NFSHA_WEBHOOK_ALLOW names it`;
  }

  /** Resolves the URL's host and checks every address it has; the reason it is refused, or null. */
  async check(url: string): Promise<string | null> {
    const host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
    let addresses: string[];
    try {
      addresses = isIP(host)
        ? [host]
        : (await new Promise<LookupAddress[]>((ok, fail) => dnsLookup(host, { all: true }, (e, a) => (e ? fail(e) : ok(a))))).map((a) => a.address);
    } catch (err) {
      return `${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    }
    for (const a of addresses) {
      const why = this.refusal(a);
      if (why) return host === a ? why : `${host} resolves to ${why}`;
    }
    return null;
  }

  /** A `lookup` for http(s).request that refuses what check() refuses, at connection time. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as LookupAddress[];
      const bad = list.map((a) => this.refusal(a.address)).find((r) => r !== null);
      if (bad) return callback(Object.assign(new Error(`${hostname} resolves to ${bad}`), { code: 'EDESTINATIONREFUSED' }), '', 0);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
}
