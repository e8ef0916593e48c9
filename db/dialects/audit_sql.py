"""The append-only audit log's database guards: what every engine's triggers refuse, and in which words.

The database refuses UPDATE and DELETE on audit_entry and audit_checkpoint. A retention purge (and nothing else in
this layer) lifts the DELETE ban on audit_entry for its own transaction: a session setting on PostgreSQL and
MariaDB; on SQLite, whose DDL is transactional, by dropping and re-creating the trigger inside the purge's
transaction. The triggers stop accidental and application-level edits; a client that can run arbitrary SQL can lift
them, and that is what the hash chain is for: it makes such edits evident.

Since revision 0005 the database also refuses impossible positions (the seq guards): CHECK constraints keep every
seq positive and the head row single, and triggers refuse an entry at or below the chain head, a checkpoint that
no purge can have made (above the head, not above the last checkpoint, or with entries still at or below it), and a
chain head that moves back. Someone with INSERT rights alone can then add entries only above the head (and no
checkpoint at all), where the verification names them and an append that meets one raises ``AuditTampered``. An
absent head row lets rows in: a restore clears the genesis head, then loads the backup's rows, the head last.

Since revision 0007 the chain head row cannot be removed (DELETE, and TRUNCATE on PostgreSQL), except the genesis
head of an empty log: that is the one a restore clears (the migrations seeded it), and removing it loses no history.
Without the head the layer refuses to append (``AuditTampered``): it never starts a new chain by itself.

Each engine's module writes these conditions in its own trigger language.
"""

from __future__ import annotations

APPEND_ONLY_TABLES = ("audit_entry", "audit_checkpoint")
SEQ_GUARD_TRIGGERS = ("audit_entry_above_head", "audit_checkpoint_proven", "audit_chain_head_forward")

ABOVE_HEAD = "audit_entry seq must be above the chain head"
PROVEN_CHECKPOINT = "audit_checkpoint must follow a purge"
HEAD_FORWARD = "audit_chain_head cannot move back"
HEAD_KEPT = "audit_chain_head cannot be removed"

HEAD_KEPT_TRIGGER = "audit_chain_head_no_delete"
# The head row may go only while it is the genesis head of an empty log (a restore clears that one).
HEAD_NOT_REMOVABLE = (
    "OLD.seq <> 0 OR EXISTS (SELECT 1 FROM audit_entry) OR EXISTS (SELECT 1 FROM audit_checkpoint)"
)

HEAD_SEQ = "(SELECT seq FROM audit_chain_head WHERE id = 1)"
# A checkpoint no purge can have made: above the head or not above the last checkpoint (while there is a head: a
# restore loads the head last), or with entries still at or below it.
CHECKPOINT_UNPROVEN = (
    "EXISTS (SELECT 1 FROM audit_chain_head WHERE id = 1 AND (NEW.up_to_seq > seq OR NEW.up_to_seq <= "
    "(SELECT coalesce(max(up_to_seq), 0) FROM audit_checkpoint))) "
    "OR EXISTS (SELECT 1 FROM audit_entry WHERE seq <= NEW.up_to_seq)"
)

# What a trigger's refusal means, for the caller (the triggers' own messages are the keys).
REFUSALS = {
    **{f"{table} is append-only": "the audit log is append-only: entries cannot be changed or removed"
       for table in APPEND_ONLY_TABLES},
    ABOVE_HEAD: "an audit entry's seq must be above the chain head: the log only grows at its head",
    PROVEN_CHECKPOINT: "an audit checkpoint is recorded by a purge only, after the entries it covers are removed",
    HEAD_FORWARD: "the audit chain head never moves back",
    HEAD_KEPT: "the audit chain head cannot be removed: the log would start again from nothing",
}


def append_only_message(table: str) -> str:
    return f"{table} is append-only"
