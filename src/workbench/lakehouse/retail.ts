import { COUNTRIES, countryCode } from '../countries.js';
import type { AppendType } from '../duckdb.js';
import { join, sql, type Sql } from '../sql.js';
import type { CsvSpec } from './csv.js';

/**
 * The UCI Online Retail log as events: one `purchase` (or `return`, for invoices starting with C)
 * per invoice line, by customer. Lines without a CustomerID cannot be attributed to anyone and are
 * quarantined. InvoiceDate is the shop's local (UK) time and is read as UTC. Country becomes its ISO
 * 3166-1 alpha-2 code (src/workbench/countries.ts: "United Kingdom" is GB, "EIRE" is IE), as the
 * simulated app writes it; a name that is not a known country ("Unspecified", "European Community",
 * "Channel Islands") is quarantined with the reason.
 */
export const RETAIL_COLUMNS = ['InvoiceNo', 'StockCode', 'Description', 'Quantity', 'InvoiceDate', 'UnitPrice', 'CustomerID', 'Country'] as const;

/**
 * One typed row per accepted line, in this column order: the loader appends these to DuckDB, which
 * builds the archive's JSON props and the typed `retail_lines` table from them.
 */
export const RETAIL_TABLE: readonly (readonly [string, AppendType])[] = [
  ['event_id', 'VARCHAR'],
  ['time', 'TIMESTAMP'],
  ['user_id', 'VARCHAR'],
  ['event', 'VARCHAR'],
  ['invoice', 'VARCHAR'],
  ['stock_code', 'VARCHAR'],
  ['description', 'VARCHAR'],
  ['quantity', 'INTEGER'],
  ['unit_price', 'DOUBLE'],
  ['amount', 'DOUBLE'],
  ['country', 'VARCHAR'],
];
/** The last field, `country`, is an ISO 3166-1 alpha-2 code. */
export type RetailRow = readonly [string, number, string, string, string, string, string, number, number, number, string];

/**
 * The ISO codes and their English names as a two-column relation `(code, name)`, for the typed
 * tables' `country_name` label (a join in SQL, so that a table rebuilt from the archive gets it too).
 */
export function countryNamesRelation(): Sql {
  return sql`(VALUES ${join(Object.entries(COUNTRIES).map(([code, name]) => sql`(${code}, ${name})`))}) AS country_names(code, name)`;
}

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/;

export function retailSpec(now: Date = new Date()): CsvSpec<RetailRow> {
  const lineInInvoice = new Map<string, number>();
  return {
    columns: RETAIL_COLUMNS,
    parse(f) {
      const invoice = f.InvoiceNo!.trim();
      if (!invoice) return 'missing InvoiceNo';
      const customer = f.CustomerID!.trim();
      if (!customer) return 'missing CustomerID';
      const customerNumber = Number(customer);
      if (!Number.isFinite(customerNumber) || customerNumber <= 0) return `CustomerID is not a positive number: ${JSON.stringify(customer)}`;
      const time = parseDateTime(f.InvoiceDate!.trim());
      if (time === undefined) return `InvoiceDate is not a date and time (YYYY-MM-DD HH:MM:SS): ${JSON.stringify(f.InvoiceDate)}`;
      if (time > now.getTime()) return `InvoiceDate is in the future: ${f.InvoiceDate}`;
      const quantity = Number(f.Quantity);
      if (f.Quantity!.trim() === '' || !Number.isInteger(quantity)) return `Quantity is not a whole number: ${JSON.stringify(f.Quantity)}`;
      const unitPrice = Number(f.UnitPrice);
      if (f.UnitPrice!.trim() === '' || !Number.isFinite(unitPrice)) return `UnitPrice is not a number: ${JSON.stringify(f.UnitPrice)}`;
      const country = countryCode(f.Country!);
      if (country === undefined) return `Country is not a known country name or ISO 3166-1 code: ${JSON.stringify(f.Country)}`;

      // Invoice lines can repeat exactly, so the id is the invoice plus the line's position in it.
      const n = (lineInInvoice.get(invoice) ?? 0) + 1;
      lineInInvoice.set(invoice, n);
      return [
        `retail-${invoice}-${n}`,
        time,
        String(Math.trunc(customerNumber)),
        invoice.startsWith('C') ? 'return' : 'purchase',
        invoice,
        f.StockCode!.trim(),
        f.Description!.trim(),
        quantity,
        unitPrice,
        Math.round(quantity * unitPrice * 100) / 100,
        country,
      ];
    },
  };
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Milliseconds since the epoch of a `YYYY-MM-DD HH:MM[:SS]` read as UTC, or undefined if invalid. */
export function parseDateTime(text: string): number | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = Number(m[3]);
  const h = Number(m[4]);
  const mi = Number(m[5]);
  const s = m[6] === undefined ? 0 : Number(m[6]);
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const days = mo === 2 && leap ? 29 : DAYS_IN_MONTH[mo - 1];
  if (days === undefined || d < 1 || d > days || h > 23 || mi > 59 || s > 59) return undefined;
  return Date.UTC(y, mo - 1, d, h, mi, s);
}
