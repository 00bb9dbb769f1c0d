import type { CsvSpec } from './csv.js';

/**
 * The IBM Telco customer table, typed. Yes/No columns become booleans; TotalCharges is blank for
 * customers with zero tenure (a known quirk of the data) and becomes NULL there, and only there.
 */
export const TELCO_COLUMNS = [
  'customerID',
  'gender',
  'SeniorCitizen',
  'Partner',
  'Dependents',
  'tenure',
  'PhoneService',
  'MultipleLines',
  'InternetService',
  'OnlineSecurity',
  'OnlineBackup',
  'DeviceProtection',
  'TechSupport',
  'StreamingTV',
  'StreamingMovies',
  'Contract',
  'PaperlessBilling',
  'PaymentMethod',
  'MonthlyCharges',
  'TotalCharges',
  'Churn',
] as const;

/** The replica table's columns, in order, with their types. */
export const TELCO_TABLE = [
  ['customer_id', 'VARCHAR'],
  ['gender', 'VARCHAR'],
  ['senior_citizen', 'BOOLEAN'],
  ['partner', 'BOOLEAN'],
  ['dependents', 'BOOLEAN'],
  ['tenure', 'INTEGER'],
  ['phone_service', 'BOOLEAN'],
  ['multiple_lines', 'VARCHAR'],
  ['internet_service', 'VARCHAR'],
  ['online_security', 'VARCHAR'],
  ['online_backup', 'VARCHAR'],
  ['device_protection', 'VARCHAR'],
  ['tech_support', 'VARCHAR'],
  ['streaming_tv', 'VARCHAR'],
  ['streaming_movies', 'VARCHAR'],
  ['contract', 'VARCHAR'],
  ['paperless_billing', 'BOOLEAN'],
  ['payment_method', 'VARCHAR'],
  ['monthly_charges', 'DOUBLE'],
  ['total_charges', 'DOUBLE'],
  ['churn', 'BOOLEAN'],
] as const;

export type TelcoRow = unknown[];

export const telcoSpec: CsvSpec<TelcoRow> = {
  columns: TELCO_COLUMNS,
  parse(f) {
    const id = f.customerID!.trim();
    if (!id) return 'missing customerID';
    const yesNo = (col: string): boolean | string => {
      const v = f[col]!.trim();
      return v === 'Yes' ? true : v === 'No' ? false : `${col} is not Yes or No: ${JSON.stringify(v)}`;
    };
    const tenure = Number(f.tenure);
    if (f.tenure!.trim() === '' || !Number.isInteger(tenure) || tenure < 0) return `tenure is not a whole number of months: ${JSON.stringify(f.tenure)}`;
    const senior = f.SeniorCitizen!.trim();
    if (senior !== '0' && senior !== '1') return `SeniorCitizen is not 0 or 1: ${JSON.stringify(senior)}`;
    const monthly = Number(f.MonthlyCharges);
    if (f.MonthlyCharges!.trim() === '' || !Number.isFinite(monthly)) return `MonthlyCharges is not a number: ${JSON.stringify(f.MonthlyCharges)}`;
    const totalText = f.TotalCharges!.trim();
    let total: number | null = Number(totalText);
    if (totalText === '' && tenure === 0) total = null;
    else if (totalText === '' || !Number.isFinite(total)) return `TotalCharges is not a number: ${JSON.stringify(f.TotalCharges)}`;

    const flags = ['Partner', 'Dependents', 'PhoneService', 'PaperlessBilling', 'Churn'].map(yesNo);
    const bad = flags.find((x) => typeof x === 'string');
    if (bad !== undefined) return bad as string;
    const [partner, dependents, phone, paperless, churn] = flags;
    const t = (col: string) => f[col]!.trim();
    return [
      id,
      t('gender'),
      senior === '1',
      partner,
      dependents,
      tenure,
      phone,
      t('MultipleLines'),
      t('InternetService'),
      t('OnlineSecurity'),
      t('OnlineBackup'),
      t('DeviceProtection'),
      t('TechSupport'),
      t('StreamingTV'),
      t('StreamingMovies'),
      t('Contract'),
      paperless,
      t('PaymentMethod'),
      monthly,
      total,
      churn,
    ];
  },
};
