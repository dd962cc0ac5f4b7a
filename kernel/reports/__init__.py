"""Reports read from the journal: the fills list, the P&L summary and the HTML page.

``fills`` and ``pnl`` are plain functions of the rows ``storage.audit.AuditReader`` returns (no
SQL here); ``html`` draws the page with matplotlib, imported only when a page is made. See
docs/reports.md.
"""
