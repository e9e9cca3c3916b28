"""How far the ticket list reads: the caps that keep a page, its count and a keyword
search cheap at a million tickets. Read as `ticket_list_limits.NAME` at call time (tests
lower them)."""

# Counting stops here ("250+"): counting reads a row per match, and at a million tickets
# the count, not the page, is what costs (measured there: a cap of 1000 tripled the time
# of the statement of a queue filtered by status and priority).
COUNT_CAP = 250
# A tag or word on at most this many tickets is read from its own index (then sorted);
# a commoner one is checked ticket by ticket while walking the sort index, where matches
# come often enough that a page fills quickly (and counting them would not be cheap).
DRIVE_CAP = 4000
# Several tags/words together are usually rare even when each one is common: up to this
# many rows of the rarest one, their intersection is taken in the side tables' indexes.
INTERSECT_CAP = 20_000
# Keyword search in list order (see ticket_list_search.TokenWalk), several words: matches
# are counted among this many first rows of the driving word (beyond: an estimate, "at
# least"; measured at a million tickets, checking a row for the other words costs 2-4 us),
# and words this rare drive the walk...
SEARCH_WINDOW = 500
# ...else the word with the fewest rows among this many first tickets of the list.
SEARCH_SAMPLE = 2000
MAX_OFFSET = 10_000
