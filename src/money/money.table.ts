/** Row and API shapes of the money tables. */
export type PartyKind = 'supplier' | 'customer';

export const STORE_ACCOUNT_KINDS = ['cash_drawer', 'bank', 'card_clearing', 'mobile_clearing', 'sales_revenue', 'inventory'] as const;
export type StoreAccountKind = (typeof STORE_ACCOUNT_KINDS)[number];
export type PartyAccountKind = 'receivable' | 'payable';
export type AccountKind = StoreAccountKind | PartyAccountKind;

export const PAYMENT_METHODS = ['cash', 'card', 'mobile', 'bank'] as const;
export type PaymentMethod = (typeof PAYMENT_METHODS)[number];

export interface PartyRow {
  id: string;
  kind: PartyKind;
  name: string;
  code: string | null;
  op_id: string;
  created_at: Date;
}

export interface PaymentRow {
  id: string;
  party_id: string;
  store_id: string;
  direction: 'in' | 'out';
  method: PaymentMethod;
  amount: number;
  reference: string | null;
  /** When the till made it (sent for a payment it queued offline), or null. */
  client_created_at: Date | null;
  /** The day its entry is booked on: the till's day or the day it was recorded (the first open one, never in the future). */
  business_date: string;
  entry_id: string;
  op_id: string;
  /** When it was recorded. */
  created_at: Date;
}

/** A payment as read back (GET): whether it was reverted, by which operation, when, and the day its reversal is booked on. */
export interface PaymentView extends PaymentRow {
  reverted_by_op: string | null;
  reverted_at: Date | null;
  revert_business_date: string | null;
}

/** The account a party's postings go to: what a customer owes us, what we owe a supplier. */
export function partyAccountKind(kind: PartyKind): PartyAccountKind {
  return kind === 'customer' ? 'receivable' : 'payable';
}

/** Where money paid by each method sits in a store: the drawer, the bank, or a clearing account. */
export function storeAccountForMethod(method: PaymentMethod | 'credit'): StoreAccountKind | null {
  switch (method) {
    case 'cash':
      return 'cash_drawer';
    case 'card':
      return 'card_clearing';
    case 'mobile':
      return 'mobile_clearing';
    case 'bank':
      return 'bank';
    case 'credit':
      return null;
  }
}
