"""Pure rules and contracts shared by every layer: the ticket's status transitions, the SLA
clock arithmetic, and the inputs and outputs of the ticket's workflow and its activities.

No I/O and no Temporal calls here, so the API, the services, the activities and the
workflows (inside Temporal's sandbox) can all import them, and they sit below all of them.
"""
