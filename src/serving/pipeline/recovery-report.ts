import type { AlertSink } from '../observability/alerts.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Archiver } from './archiver.js';
import type { ConsumerRunner } from './consumer.js';
import type { EventLog } from './event-log.js';

/**
 * Says, loudly, what the event log lost and what startup realigned: the damaged tail cut (bytes,
 * file, offsets), the consumers moved back to the log's end, the archive files set aside. An error
 * log line, an alert and a count on /metrics; nothing when the log opened clean.
 */
export async function reportLogRecovery(
  log: EventLog,
  runners: readonly ConsumerRunner[],
  archiver: Archiver,
  sinks: { logger: Logger; alerts: AlertSink; metrics: Metrics },
): Promise<void> {
  const recovered = log.recovered;
  const consumers = runners.flatMap((r) => (r.rewound ? [{ consumer: r.consumer.name, ...r.rewound }] : []));
  const committed = recovered?.rewound ?? [];
  const cut = recovered?.cut;
  if (!cut && consumers.length === 0 && committed.length === 0) return;
  const end = recovered?.end ?? (await log.next());
  // How far consumers had read: every offset from the end up to there held a durable record.
  const reached = Math.max(end, ...consumers.map((c) => c.from), ...committed.map((c) => c.committed));
  const parts: string[] = [];
  if (cut) {
    const records =
      cut.records === null ? 'a torn or garbled tail' : `${cut.records} whole record(s)${cut.intactRecords ? `, ${cut.intactRecords} of them intact` : ''}`;
    parts.push(`cut ${cut.bytes} damaged bytes (${records}) from byte ${cut.byte} of ${cut.file}, kept in ${cut.savedAs}; the log now ends at offset ${end}`);
  }
  const lost = reached - end === 1 ? `the record at offset ${end} is lost` : `the ${reached - end} records at offsets ${end} to ${reached - 1} are lost`;
  if (reached > end)
    parts.push(`consumers had read up to offset ${reached - 1}: ${lost}, and new events take their offsets (clients may resend the lost events)`);
  else if (!cut) parts.push(`the log ends at offset ${end}`);
  if (consumers.length > 0) parts.push(`moved back: ${consumers.map((c) => `${c.consumer} ${c.from} -> ${c.to}`).join(', ')}`);
  if (archiver.quarantined.length > 0) parts.push(`archive files holding lost offsets moved to quarantine: ${archiver.quarantined.join(', ')}`);
  const reason = parts.join('; ');
  sinks.logger.error(
    { recovery: { end, cut, lost: reached > end ? { from: end, to: reached - 1 } : undefined, consumers, committed, quarantined: archiver.quarantined } },
    `event log recovered: ${reason}`,
  );
  sinks.alerts.raise({ kind: 'log_recovery', series: 'event_log', labels: { log: log.kind }, reason, end, detectedAt: new Date().toISOString() });
  sinks.metrics.logRecoveries.inc();
}
