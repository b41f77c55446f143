import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { one } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { PG, pgCode } from '../core/pgErrors.js';
import { partyAccountKind, type PartyKind, type PartyRow } from './money.table.js';

export interface PartyInput {
  kind: PartyKind;
  name: string;
  code?: string | undefined;
}

/** A supplier or customer and its one account (payable / receivable), opened at zero. */
export async function createParty(cmd: Command, input: PartyInput): Promise<PartyRow> {
  const id = newId();
  try {
    const party = await one(
      cmd.tx,
      sql<PartyRow>`
        WITH party AS (
          INSERT INTO parties (tenant_id, id, kind, name, code, op_id)
          VALUES (${cmd.tenantId}, ${id}, ${input.kind}, ${input.name}, ${input.code ?? null}, ${cmd.opId})
          RETURNING id, kind, name, code, op_id, created_at
        ), account AS (
          INSERT INTO accounts (tenant_id, id, key, kind, party_id, op_id)
          VALUES (${cmd.tenantId}, ${newId()}, ${`party/${id}`}, ${partyAccountKind(input.kind)}, ${id}, ${cmd.opId})
        )
        SELECT * FROM party`,
    );
    cmd.touch('parties', id);
    cmd.audit({ subjectType: 'party', subjectId: id, after: party });
    return party;
  } catch (error) {
    if (pgCode(error) === PG.UNIQUE_VIOLATION) {
      throw new AppError('already_exists', `a ${input.kind} with code "${input.code}" already exists`, { cause: error });
    }
    throw error;
  }
}
