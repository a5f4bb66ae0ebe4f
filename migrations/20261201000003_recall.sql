-- Recall (#19): the messages a reply was given back from beyond the model's window, as a
-- JSON array of their ids on the reply (NULL: none). Shown on the reply and on those messages.
ALTER TABLE messages ADD COLUMN recalled TEXT;
